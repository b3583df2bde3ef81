/**
 * Load generators of bench/director.ts (and bench/profile-ingest.ts), each run in
 * a worker thread so client and director do not share one event loop.
 */
import { Worker } from 'node:worker_threads';

export type Load = Array<{ id: string; token: string; bodies: string[] }>;

/** HTTP load generator: worker w posts the manifests of devices w, w + C, ... in counter order. */
export const HTTP_CLIENT = `
const { workerData, parentPort } = require('node:worker_threads');
const { url, perDevice, concurrency } = workerData;
let sent = 0, failures = 0;
async function worker(w) {
  for (let i = w; i < perDevice.length; i += concurrency) {
    const d = perDevice[i];
    const headers = { authorization: 'UpfleetDevice ' + d.token, 'content-type': 'application/json' };
    for (const body of d.bodies) {
      const res = await fetch(url + '/api/v1/devices/' + d.id + '/manifest', { method: 'POST', headers, body });
      await res.arrayBuffer();
      if (res.status !== 200) failures++;
      sent++;
    }
  }
}
const t0 = performance.now();
Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w))).then(() => parentPort.postMessage({ sent, failures, seconds: (performance.now() - t0) / 1000 }));
`;

/** MQTT load generator: every device connects, then publishes its manifests (QoS 1), each after the ack of the one before. */
export const MQTT_CLIENT = `
const { workerData, parentPort } = require('node:worker_threads');
const { connect } = require('mqtt');
const { url, prefix, perDevice, auth } = workerData;
async function device(d) {
  const root = prefix + '/devices/' + d.id + '/';
  const client = connect(url, { protocolVersion: 4, clientId: auth ? d.id : d.id + '-bench', clean: true, reconnectPeriod: 0, connectTimeout: 20000,
    ...(auth && { username: d.id, password: d.token }) });
  await new Promise((resolve, reject) => { client.once('connect', resolve); client.once('error', reject); });
  client.stream.setNoDelay?.(true);
  let waiting;
  client.on('message', (_t, payload) => waiting?.(JSON.parse(payload.toString())));
  await client.subscribeAsync(root + 'ack', { qos: 1 });
  return { client, async run() {
    let failures = 0;
    for (const body of d.bodies) {
      const ack = new Promise((r) => (waiting = r));
      await client.publishAsync(root + 'manifest', body, { qos: 1 });
      if (!(await ack).accepted) failures++;
    }
    return failures;
  } };
}
(async () => {
  const devices = await Promise.all(perDevice.map(device));
  const t0 = performance.now();
  const failures = (await Promise.all(devices.map((d) => d.run()))).reduce((a, b) => a + b, 0);
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(devices.map((d) => d.client.endAsync()));
  parentPort.postMessage({ sent: perDevice.length * perDevice[0].bodies.length, failures, seconds });
})().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
`;

export async function runClient(code: string, workerData: unknown): Promise<{ sent: number; failures: number; seconds: number }> {
  const r = await new Promise<{ sent: number; failures: number; seconds: number; error?: string }>((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData });
    w.once('message', resolve);
    w.once('error', reject);
  });
  if (r.error) throw new Error(r.error);
  return r;
}

