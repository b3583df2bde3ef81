/**
 * The body of a verify worker: runs manifest-checks.ts on each job the pool
 * posts (several per message) and answers with the checked manifest or the
 * refusal, as plain data
 * (verify-pool.ts rebuilds the typed error). Keys are decoded once per ECU key.
 */
import { parentPort } from 'node:worker_threads';
import { checkManifest, KeyCache } from './manifest-checks.ts';
import { toWire, type Job, type Answer } from './verify-wire.ts';

const keys = new KeyCache();
parentPort!.on('message', (jobs: Job[]) => {
  const answers = jobs.map((job): Answer => {
    try {
      return { id: job.id, ok: true, checked: checkManifest(job.deviceId, job.bytes, job.view, keys) };
    } catch (error) {
      return { id: job.id, ok: false, error: toWire(error) };
    }
  });
  parentPort!.postMessage(answers);
});
parentPort!.postMessage({ ready: true });
