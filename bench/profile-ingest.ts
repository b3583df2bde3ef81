/**
 * Where the director's main thread spends its time per manifest: ingests signed
 * manifests (function calls, or --http through the HTTP API with the bench's
 * client) under the inspector's CPU profiler, after the signing, and writes the
 * .cpuprofile (open it in Chrome DevTools, or sum it by function).
 * Usage: node --import tsx bench/profile-ingest.ts [--http] [--verify-workers N] [--out FILE]
 */
import { Session } from 'node:inspector/promises';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { utf8 } from '@upfleet/core';
import { harness, SimDevice } from '../director/src/testing/harness.ts';
import { HTTP_CLIENT, runClient } from './director-clients.ts';

const { values: args } = parseArgs({ options: { http: { type: 'boolean' }, 'verify-workers': { type: 'string' }, out: { type: 'string' } } });
const h = await harness({ logLevel: 'silent', mqtt: 'none', ...(args['verify-workers'] !== undefined && { verifyWorkers: Number(args['verify-workers']) }) });
const devices: SimDevice[] = [];
for (let i = 0; i < 100; i++) {
  const d = new SimDevice(`p-${i}`, ['gw', 'brake', 'engine', 'radio']);
  await h.register(d);
  devices.push(d);
}
const batches = Array.from({ length: 20 }, () => devices.map((d) => ({ d, bytes: utf8(JSON.stringify(d.manifest())) })));
const s = new Session();
s.connect();
await s.post('Profiler.enable');
await s.post('Profiler.setSamplingInterval', { interval: 100 });
await s.post('Profiler.start');
const t0 = performance.now();
let n = 0;
if (args.http) {
  const perDevice = devices.map((d, i) => ({ id: d.id, token: d.token(), bodies: batches.map((b) => Buffer.from(b[i]!.bytes).toString()) }));
  const r = await runClient(HTTP_CLIENT, { url: h.director.url, perDevice, concurrency: 32 });
  if (r.failures > 0) throw new Error(`${r.failures} refused`);
  n = r.sent;
} else {
  for (const batch of batches) {
    await Promise.all(batch.map(({ d, bytes }) => h.director.services.manifests.ingest(d.id, bytes, 'function', true)));
    n += batch.length;
  }
}
const ms = performance.now() - t0;
const { profile } = await s.post('Profiler.stop');
writeFileSync(args.out ?? 'director-ingest.cpuprofile', JSON.stringify(profile));
console.log(JSON.stringify({ manifests: n, ms: Math.round(ms), perManifestUs: Math.round((ms * 1000) / n) }));
await h.close();
