/**
 * Where a downloaded image's bytes go: copied into a few fixed batch buffers;
 * each full batch is written to the partial file (on the thread pool) and
 * hashed with every listed algorithm at the same time, while the receiving
 * thread fills the next batch. With two algorithms the receiving thread hashes
 * the cheaper one itself (sha256: hardware instructions on x64 and most ARMv8)
 * and a worker thread the other, so the download keeps up with the slowest
 * single hash instead of the sum of them; a lone algorithm goes to a worker.
 * Why not a worker each: on a loaded 2-core machine the second worker made the
 * sha512 worker spend a third of the download waiting for the CPU after each
 * hand-back (CPU profile, bench:agent), and every worker is a V8 isolate of
 * several MB.
 *
 * Invariants:
 * - Memory is BUFFERS x BATCH bytes whatever the image size: `push` waits while
 *   every buffer is busy (being written or hashed).
 * - Every hash sees the bytes in order; the file's batches are written one after
 *   another, at increasing positions, so `written` is always a prefix of the
 *   file that holds exactly the bytes pushed (a retry may resume after it).
 * - A buffer is refilled only after its write and all its hashes are done.
 * - Images under PARALLEL_MIN bytes are hashed on the calling thread: starting
 *   workers would cost more than it saves. Same batches, same results.
 * - The first failure (a write, a worker) is reported by the next `push`, by
 *   `flush`, and by `digestHex`.
 * - Every SYNC_EVERY bytes written, the file is synced in the background (one sync
 *   at a time, beside the next writes), so the caller's final sync only flushes the
 *   tail instead of the whole image, and dirty pages never pile up in memory.
 * - Bytes are copied into the shared batches with Buffer#fill, one native memcpy
 *   (see `push`).
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { HashAlgorithm } from '@upfleet/core';
import { WorkerHash } from './hash-worker.ts';

/**
 * 4 MiB, not 1: each batch costs every worker two cross-thread wake-ups, and with 1 MiB
 * the sha512 worker spent a fifth of the download in postMessage (CPU profile, load 13).
 */
const BATCH = 4 << 20;
const BUFFERS = 4;
const SYNC_EVERY = 64 << 20;
/** Below this many bytes an image is hashed on the receiving thread. */
export const PARALLEL_MIN = 16 << 20;

/** One algorithm over the batch buffers: on a worker, or in this thread. */
interface BatchHash {
  update(index: number, length: number): Promise<void>;
  digestHex(): Promise<string>;
  close(): Promise<void>;
}

class InThreadHash implements BatchHash {
  readonly #hash;
  constructor(
    algorithm: HashAlgorithm,
    private readonly views: readonly Uint8Array[],
  ) {
    this.#hash = createHash(algorithm);
  }
  async update(index: number, length: number): Promise<void> {
    this.#hash.update(this.views[index]!.subarray(0, length));
  }
  async digestHex(): Promise<string> {
    return this.#hash.digest('hex');
  }
  async close(): Promise<void> {}
}

/** Relative cost per byte: sha256 has hardware instructions on x64 (SHA-NI) and ARMv8 crypto extensions, sha512 rarely. */
const COST: Record<HashAlgorithm, number> = { sha256: 1, sha512: 2 };

function cheapest(algorithms: readonly HashAlgorithm[]): HashAlgorithm {
  return [...algorithms].sort((a, b) => COST[a] - COST[b])[0]!;
}

export class ImageSink {
  /** Buffer views of the shared batch buffers (Buffer for its native `fill`, see `push`). */
  readonly #views: Buffer[];
  readonly #hashes: Array<[HashAlgorithm, BatchHash]>;
  readonly #free: number[];
  /** Batches handed out and not yet done, oldest first. */
  readonly #busy: Array<Promise<number>> = [];
  #current: number | undefined;
  #size = 0;
  #file: FileHandle | undefined;
  #position = 0;
  #lastWrite: Promise<void> = Promise.resolve();
  #written = 0;
  #syncedAt = 0;
  #syncing: Promise<void> | undefined;
  #failure: unknown;
  #pushed = 0;

  /** `expectedBytes` (the image's length) picks worker or in-thread hashing. */
  constructor(algorithms: readonly HashAlgorithm[], expectedBytes: number) {
    const buffers = Array.from({ length: BUFFERS }, () => new SharedArrayBuffer(BATCH));
    this.#views = buffers.map((b) => Buffer.from(b));
    this.#free = [...this.#views.keys()].reverse();
    const parallel = expectedBytes >= PARALLEL_MIN;
    const here = parallel && algorithms.length > 1 ? cheapest(algorithms) : undefined;
    this.#hashes = algorithms.map((a) => [a, parallel && a !== here ? new WorkerHash(a, buffers) : new InThreadHash(a, this.#views)]);
  }

  /** Bytes pushed so far. */
  get length(): number {
    return this.#pushed;
  }

  /** End of the file prefix known written (see the invariants). */
  get written(): number {
    return this.#written;
  }

  /** From now on full batches are also written to `file`, from `position` on. Call after `flush`. */
  writeTo(file: FileHandle, position: number): void {
    this.#file = file;
    this.#position = this.#written = this.#syncedAt = position;
  }

  /** Copies `chunk` into the batches, handing each full one on; waits only when every buffer is busy. */
  async push(chunk: Uint8Array): Promise<void> {
    let from = 0;
    while (from < chunk.byteLength) {
      if (this.#current === undefined) this.#current = await this.#acquire();
      const n = Math.min(chunk.byteLength - from, BATCH - this.#size);
      // Buffer#fill with a value as long as the range is one native memcpy. TypedArray#set and
      // Buffer#copy into a SharedArrayBuffer copy with relaxed atomics, byte by byte when source
      // and target offsets differ modulo 8 (as they do after any odd-sized chunk): about ten
      // times slower, measured at over a CPU second per GiB.
      this.#views[this.#current]!.fill(chunk.subarray(from, from + n), this.#size, this.#size + n);
      this.#size += n;
      from += n;
      this.#pushed += n;
      if (this.#size === BATCH) this.#dispatch();
    }
  }

  /** Hands on the partly filled batch and waits until every batch is written and hashed. */
  async flush(): Promise<void> {
    if (this.#current !== undefined && this.#size > 0) this.#dispatch();
    while (this.#busy.length > 0) this.#release(await this.#busy.shift()!);
    await this.#syncing;
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Hex digests by algorithm, after `flush`. */
  async digestHex(): Promise<Record<string, string>> {
    await this.flush();
    const out: Record<string, string> = {};
    for (const [name, hash] of this.#hashes) out[name] = await hash.digestHex();
    return out;
  }

  /** Ends the workers (always call it, also after a failure). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#busy, this.#syncing]);
    await Promise.all(this.#hashes.map(([, h]) => h.close()));
  }

  async #acquire(): Promise<number> {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#free.length === 0) this.#release(await this.#busy.shift()!);
    if (this.#failure !== undefined) throw this.#failure;
    return this.#free.pop()!;
  }

  #release(index: number): void {
    this.#free.push(index);
  }

  #dispatch(): void {
    const index = this.#current!;
    const size = this.#size;
    this.#current = undefined;
    this.#size = 0;
    const work: Array<Promise<unknown>> = this.#hashes.map(([, h]) => h.update(index, size));
    if (this.#file) work.push(this.#write(this.#file, this.#views[index]!.subarray(0, size)));
    // Settles with the index either way, so the buffer is reused; the failure is kept.
    this.#busy.push(
      Promise.all(work).then(
        () => index,
        (e: unknown) => {
          this.#failure ??= e;
          return index;
        },
      ),
    );
  }

  /** Writes after the previous batch's write, at the next position; nothing more once one failed. */
  #write(file: FileHandle, bytes: Uint8Array): Promise<void> {
    const at = this.#position;
    this.#position += bytes.byteLength;
    this.#lastWrite = this.#lastWrite.then(async () => {
      let done = 0;
      while (done < bytes.byteLength) {
        const { bytesWritten } = await file.write(bytes, done, bytes.byteLength - done, at + done);
        done += bytesWritten;
      }
      this.#written = at + done;
      if (!this.#syncing && this.#written - this.#syncedAt >= SYNC_EVERY) this.#syncInBackground(file);
    });
    return this.#lastWrite;
  }

  #syncInBackground(file: FileHandle): void {
    const upTo = this.#written;
    this.#syncing = file.datasync().then(
      () => {
        this.#syncedAt = upTo;
        this.#syncing = undefined;
      },
      (e: unknown) => {
        this.#failure ??= e;
      },
    );
  }
}
