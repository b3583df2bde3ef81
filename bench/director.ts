/**
 * Director manifest ingestion against the ed25519 verify limit.
 * Each manifest carries 4 ECU reports, so accepting it takes 5 signature
 * verifications (the primary's plus one per report). The raw verify rate is
 * measured in the same run (node:crypto through core Key.verify, the path the
 * director uses), and ratioToVerifyLimit = manifests/s * 5 / verifies/s:
 * 1.0 would mean the director spends nothing but signature checks.
 * Two cases: "function" calls the ingestion service directly (parse, checks,
 * SQLite commit); "http" posts through the real HTTP API on loopback with
 * device-token auth, the load generator in a worker thread. The http line also
 * gives the rate of a bare node:http server that only reads the body and
 * answers (same client, same bodies): the transport's own ceiling here.
 */
import { Worker } from 'node:worker_threads';
import { createServer } from 'node:http';
import { Ed25519Signer, utf8 } from '@upfleet/core';
import { harness, SimDevice } from '../director/src/testing/harness.ts';

const DEVICES = 100;
const MANIFESTS_PER_DEVICE = 20;
const HTTP_CONCURRENCY = 32;
const VERIFIES_PER_MANIFEST = 5;

function verifyRate(): number {
  const signer = Ed25519Signer.generate();
  const message = utf8('x'.repeat(300));
  const sig = signer.sign(message);
  const key = signer.key;
  for (let i = 0; i < 2000; i++) key.verify(sig, message);
  const n = 20_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) if (!key.verify(sig, message)) throw new Error('verify failed');
  return n / ((performance.now() - t0) / 1000);
}

async function prepare(h: Awaited<ReturnType<typeof harness>>, tag: string) {
  const devices: SimDevice[] = [];
  for (let i = 0; i < DEVICES; i++) {
    const d = new SimDevice(`${tag}-${i}`, ['gw', 'brake', 'engine', 'radio']);
    await h.register(d);
    devices.push(d);
  }
  // Signed ahead of time: the benchmark measures the director, not the devices.
  const batches = Array.from({ length: MANIFESTS_PER_DEVICE }, () => devices.map((d) => ({ d, bytes: utf8(JSON.stringify(d.manifest())) })));
  return { devices, batches };
}

/** HTTP load generator: worker w posts the manifests of devices w, w + C, ... in counter order. */
const CLIENT = `
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
Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w))).then(() => parentPort.postMessage({ sent, failures }));
`;

type Load = Array<{ id: string; token: string; bodies: string[] }>;

async function postAll(url: string, perDevice: Load): Promise<{ sent: number; failures: number; seconds: number }> {
  const t0 = performance.now();
  const r = await new Promise<{ sent: number; failures: number }>((resolve, reject) => {
    const w = new Worker(CLIENT, { eval: true, workerData: { url, perDevice, concurrency: HTTP_CONCURRENCY } });
    w.once('message', resolve);
    w.once('error', reject);
  });
  return { ...r, seconds: (performance.now() - t0) / 1000 };
}

/** Requests per second of a server that does nothing but read the body and answer. */
async function bareHttpRate(perDevice: Load): Promise<number> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"accepted":true}'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.address();
  try {
    const { sent, seconds } = await postAll(`http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`, perDevice);
    return sent / seconds;
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

const h = await harness({ logLevel: 'silent' });
try {
  // The machine may be shared: the baseline is measured under the same load as each case
  // (interleaved for the function case, before and after for the HTTP case).
  const line = (mode: string, manifests: number, seconds: number, before: number, after = verifyRate(), extra: Record<string, number> = {}) => {
    const verifiesPerSecond = (before + after) / 2;
    const manifestsPerSecond = manifests / seconds;
    console.log(JSON.stringify({
      bench: 'director', mode, manifests, ecuReportsPerManifest: 4, seconds: Number(seconds.toFixed(3)),
      manifestsPerSecond: Math.round(manifestsPerSecond), verifiesPerSecond: Math.round(verifiesPerSecond),
      verifyLimitManifestsPerSecond: Math.round(verifiesPerSecond / VERIFIES_PER_MANIFEST),
      ratioToVerifyLimit: Number(((manifestsPerSecond * VERIFIES_PER_MANIFEST) / verifiesPerSecond).toFixed(3)),
      ...extra,
    }));
  };

  {
    // Interleaved: each batch of manifests is followed by a slice of raw verifies, so both
    // rates are measured under the same machine load.
    const { batches } = await prepare(h, 'fn');
    const services = h.director.services;
    const signer = Ed25519Signer.generate();
    const message = utf8('x'.repeat(300));
    const sig = signer.sign(message);
    let ingestMs = 0;
    let verifyMs = 0;
    let verifies = 0;
    let n = 0;
    for (const batch of batches) {
      const t0 = performance.now();
      for (const { d, bytes } of batch) await services.manifests.ingest(d.id, bytes, 'function', true);
      const t1 = performance.now();
      for (let i = 0; i < batch.length * VERIFIES_PER_MANIFEST; i++) if (!signer.key.verify(sig, message)) throw new Error('verify failed');
      verifyMs += performance.now() - t1;
      ingestMs += t1 - t0;
      verifies += batch.length * VERIFIES_PER_MANIFEST;
      n += batch.length;
    }
    const verifiesPerSecond = verifies / (verifyMs / 1000);
    line('function', n, ingestMs / 1000, verifiesPerSecond, verifiesPerSecond);
  }

  {
    const { devices, batches } = await prepare(h, 'http');
    // The load generator runs in a worker thread so client and server do not share one event loop.
    const perDevice = devices.map((d, i) => ({ id: d.id, token: d.token(), bodies: batches.map((b) => Buffer.from(b[i]!.bytes).toString()) }));
    const bare = await bareHttpRate(perDevice);
    const before = verifyRate();
    const { sent, failures, seconds } = await postAll(h.director.url, perDevice);
    if (failures > 0) throw new Error(`${failures} manifests refused over HTTP`);
    line('http', sent, seconds, before, verifyRate(), { bareHttpRequestsPerSecond: Math.round(bare), ratioToBareHttp: Number((sent / seconds / bare).toFixed(3)) });
  }
} finally {
  await h.close();
}
