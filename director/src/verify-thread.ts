/**
 * The body of a verify worker: runs manifest-checks.ts on each job the pool
 * posts and answers with the checked manifest or the refusal, as plain data
 * (verify-pool.ts rebuilds the typed error). Keys are decoded once per ECU key.
 */
import { parentPort } from 'node:worker_threads';
import { checkManifest, KeyCache } from './manifest-checks.ts';
import { toWire, type Job, type Answer } from './verify-wire.ts';

const keys = new KeyCache();
parentPort!.on('message', (job: Job) => {
  let answer: Answer;
  try {
    answer = { id: job.id, ok: true, checked: checkManifest(job.deviceId, job.bytes, job.view, keys) };
  } catch (error) {
    answer = { id: job.id, ok: false, error: toWire(error) };
  }
  parentPort!.postMessage(answer);
});
parentPort!.postMessage({ ready: true });
