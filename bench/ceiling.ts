/**
 * What this machine allows the director at most, measured in the same run as
 * its figures (bench/director.ts): the director cannot do less per manifest
 * than its transport (the same client against a server or broker that only
 * answers) plus five signature verifications, and has only the machine's cores
 * for both.
 * - Raw verify rates on one and on two worker threads at once: how far two
 *   threads scale here (a VM's two vCPUs need not give twice one).
 * - Machine-wide CPU time (/proc/stat: every process, the broker and the
 *   client included; 10 ms ticks) of a bare transport run, per manifest.
 * Then the most manifests/s the machine could ingest is
 *   cores / (transport CPU + verify CPU on all threads) per manifest,
 * an upper bound: it leaves out parsing, canonical encoding, the store, and
 * whatever else the machine runs meanwhile (counted in the transport's share).
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';

/** Busy CPU µs of the whole machine so far (user, nice, system, irq, softirq; not idle, iowait, steal). */
export function machineBusyUs(): number {
  const [user, nice, system, , , irq, softirq] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (user! + nice! + system! + irq! + softirq!) * 10_000;
}

/** A worker that, when told, verifies one ed25519 signature over and over for `ms` and answers its rate. */
const VERIFY_LOOP = `
const { parentPort } = require('node:worker_threads');
const crypto = require('node:crypto');
const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
const message = Buffer.alloc(300, 120);
const signature = crypto.sign(null, message, privateKey);
function rate(ms) {
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let i = 0; i < 50; i++) if (!crypto.verify(null, message, publicKey, signature)) throw new Error('verify failed');
    n += 50;
  }
  return n / ((performance.now() - t0) / 1000);
}
rate(200);
parentPort.on('message', (ms) => parentPort.postMessage(rate(ms)));
parentPort.postMessage('ready');
`;

async function verifyThreads(count: number): Promise<{ run(ms: number): Promise<number>; close(): Promise<void> }> {
  const workers = Array.from({ length: count }, () => new Worker(VERIFY_LOOP, { eval: true }));
  const answer = (w: Worker) => new Promise<unknown>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  await Promise.all(workers.map(answer));
  return {
    // Started together; the sum of their rates over the same window.
    async run(ms: number) {
      const rates = workers.map(answer);
      for (const w of workers) w.postMessage(ms);
      return ((await Promise.all(rates)) as number[]).reduce((a, b) => a + b, 0);
    },
    async close() {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

export interface VerifyScaling {
  oneThread: number;
  allThreads: number;
  threads: number;
}

/** Raw verifies/s on one thread and on one thread per core at once, alternated (1, all, 1, all) so both see the same load. */
export async function verifyScaling(windowMs = 1000): Promise<VerifyScaling> {
  const threads = availableParallelism();
  const one = await verifyThreads(1);
  const all = await verifyThreads(threads);
  try {
    let oneThread = 0;
    let allThreads = 0;
    for (let i = 0; i < 2; i++) {
      oneThread += (await one.run(windowMs)) / 2;
      allThreads += (await all.run(windowMs)) / 2;
    }
    return { oneThread, allThreads, threads };
  } finally {
    await Promise.all([one.close(), all.close()]);
  }
}

/**
 * Manifests/s at most: the machine's cores shared by the transport's CPU per manifest
 * (0 in-process) and `verifies` verifications at the all-threads rate.
 */
export function maxManifestsPerSecond(scaling: VerifyScaling, transportCpuUsPerManifest: number, verifies: number): number {
  const verifyCpuUs = (scaling.threads * 1e6 * verifies) / scaling.allThreads;
  return (scaling.threads * 1e6) / (transportCpuUsPerManifest + verifyCpuUs);
}
