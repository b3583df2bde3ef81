/**
 * One hash algorithm computed on its own worker thread over shared batch buffers,
 * so a download's sha512 runs beside the thread that receives the bytes (and
 * hashes sha256, image-sink.ts).
 *
 * Invariants:
 * - The worker reads the buffers in place (SharedArrayBuffer): no copy per batch.
 *   The caller must not refill a buffer until the `update` that names it resolved.
 * - Batches are hashed in the order `update` is called; `digestHex` waits for all.
 * - The worker is plain JavaScript evaluated from a string, so it runs the same from
 *   the sources, an esbuild bundle, or the single executable (no file to find).
 * - A worker that dies rejects every pending and later call; `close` ends it.
 */
import { Worker } from 'node:worker_threads';
import type { HashAlgorithm } from '@upfleet/core';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hash = createHash(workerData.algorithm);
const views = workerData.buffers.map((b) => new Uint8Array(b));
parentPort.on('message', ([index, length]) => {
  if (index < 0) parentPort.postMessage(hash.digest('hex'));
  else {
    hash.update(views[index].subarray(0, length));
    parentPort.postMessage(index);
  }
});
`;

export class WorkerHash {
  readonly #worker: Worker;
  readonly #pending: Array<{ resolve: (value: unknown) => void; reject: (e: Error) => void }> = [];
  #failed: Error | undefined;

  constructor(
    readonly algorithm: HashAlgorithm,
    buffers: readonly SharedArrayBuffer[],
  ) {
    this.#worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { algorithm, buffers } });
    this.#worker.on('message', (value: unknown) => this.#pending.shift()?.resolve(value));
    const fail = (e: Error) => {
      this.#failed ??= e;
      for (const p of this.#pending.splice(0)) p.reject(e);
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`${algorithm} hash worker exited (${code})`)));
  }

  /** Hashes the first `length` bytes of buffer `index`; resolves once the buffer is free again. */
  update(index: number, length: number): Promise<void> {
    return this.#call([index, length]) as Promise<void>;
  }

  /** The hex digest of everything hashed (the worker cannot hash more afterwards). */
  digestHex(): Promise<string> {
    return this.#call([-1, 0]) as Promise<string>;
  }

  async close(): Promise<void> {
    await this.#worker.terminate();
  }

  #call(message: [number, number]): Promise<unknown> {
    if (this.#failed) return Promise.reject(this.#failed);
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      this.#worker.postMessage(message);
    });
  }
}
