/** Profiles function-mode ingestion only (after signing): writes a .cpuprofile for `node --cpu-prof`-style analysis. */
import { Session } from 'node:inspector/promises';
import { writeFileSync } from 'node:fs';
import { utf8 } from '@upfleet/core';
import { harness, SimDevice } from '../director/src/testing/harness.ts';

const h = await harness({ logLevel: 'silent' });
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
for (const batch of batches) {
  await Promise.all(batch.map(({ d, bytes }) => h.director.services.manifests.ingest(d.id, bytes, 'function', true)));
  n += batch.length;
}
const ms = performance.now() - t0;
const { profile } = await s.post('Profiler.stop');
writeFileSync(process.argv[2] ?? '/tmp/pool-prof/ingest.cpuprofile', JSON.stringify(profile));
console.log(JSON.stringify({ manifests: n, ms: Math.round(ms), perManifestUs: Math.round((ms * 1000) / n) }));
await h.close();
