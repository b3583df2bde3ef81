/**
 * CPU per manifest by thread (µs; Linux /proc/self/task, 10 ms ticks), for the split behind
 * bench/director.ts's process figure: the main thread (tid = pid), the verify workers,
 * the load generator's worker thread, and V8's platform threads (GC helpers), each listed
 * as tid:name. Modes: in-process (services.manifests.ingest), http, mqtt (embedded broker).
 * Usage: node --import tsx bench/director-threads.ts [in-process|http|mqtt]
 */
import { readFileSync, readdirSync } from 'node:fs';
import { utf8 } from '@upfleet/core';
import { harness, SimDevice } from '../director/src/testing/harness.ts';
import { HTTP_CLIENT, MQTT_CLIENT, runClient } from './director-clients.ts';
const mode = process.argv[2] ?? 'http';
if (!['in-process', 'http', 'mqtt'].includes(mode)) throw new Error(`unknown mode ${mode}`);
const h = await harness({ logLevel: 'silent', mqtt: mode === 'mqtt' ? 'embedded' : 'none', mqttPrefix: 'tp/v1' });
const devices: SimDevice[] = [];
for (let i = 0; i < 100; i++) { const d = new SimDevice(`t-${i}`, ['gw', 'brake', 'engine', 'radio']); await h.register(d); devices.push(d); }
const batches = Array.from({ length: 20 }, () => devices.map((d) => ({ d, bytes: utf8(JSON.stringify(d.manifest())) })));
function snap() {
  const m = new Map<string, number>();
  for (const t of readdirSync('/proc/self/task')) {
    try { const s = readFileSync(`/proc/self/task/${t}/stat`, 'utf8'); const comm = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')); const f = s.split(') ')[1]!.split(' '); m.set(`${t}:${comm}`, (Number(f[11]) + Number(f[12])) * 10_000); } catch {}
  }
  return m;
}
const perDevice = devices.map((d, i) => ({ id: d.id, token: d.token(), bodies: batches.map((b) => Buffer.from(b[i]!.bytes).toString()) }));
const s0 = snap(); const u0 = process.cpuUsage();
let n = 0; const t0 = performance.now();
if (mode === 'http') { const r = await runClient(HTTP_CLIENT, { url: h.director.url, perDevice, concurrency: 32 }); n = r.sent; if (r.failures) throw new Error('fail'); }
else if (mode === 'mqtt') { const r = await runClient(MQTT_CLIENT, { url: h.director.mqttUrl, prefix: 'tp/v1', perDevice, auth: true }); n = r.sent; if (r.failures) throw new Error('fail'); }
else for (const b of batches) { await Promise.all(b.map(({ d, bytes }) => h.director.services.manifests.ingest(d.id, bytes, 'function', true))); n += b.length; }
const ms = performance.now() - t0;
const u = process.cpuUsage(u0); const s1 = snap();
const rows = [...s1].map(([k, v]) => [k, (v - (s0.get(k) ?? 0)) / n] as const).filter(([, v]) => v > 5).sort((a, b) => b[1] - a[1]);
console.log(JSON.stringify({ mode, n, perSec: Math.round(n / ms * 1000), processUs: Math.round((u.user + u.system) / n), mainUs: Math.round(rows.find(([k]) => k.startsWith(`${process.pid}:`))?.[1] ?? 0), threads: Object.fromEntries(rows.map(([k, v]) => [k, Math.round(v)])) }));
await h.close();
