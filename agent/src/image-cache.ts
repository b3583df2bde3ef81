/**
 * Downloaded images on disk: `<dir>/<sha256>.image` once verified,
 * `<dir>/<sha256>.partial` while downloading.
 *
 * Invariants:
 * - A `.image` file exists only after its length and every listed hash were
 *   checked while streaming; it is renamed from `.partial` after fsync. Nothing
 *   reads a `.partial` file except the resume logic.
 * - An interrupted download resumes with Range from the partial file's size;
 *   the bytes already on disk are re-hashed first, so the check covers them.
 * - Never more than the signed length is accepted (LengthLimitError), and a
 *   hash mismatch deletes the partial file (LengthOrHashMismatchError).
 * - An image lives here only until its ECU runs it: once activated it is
 *   deleted (`removeInstalled`), so an update needs the image's size once on
 *   disk, not twice. A failed download that will be retried keeps its partial
 *   file, so the retry resumes.
 */
import { createReadStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { DownloadError, LengthLimitError, LengthOrHashMismatchError, isSupportedHash, type HashAlgorithm } from '@upfleet/core';
import { fsyncDir } from './atomic-file.ts';
import type { HttpFetcher } from './fetcher.ts';
import { RELEASE_EVERY_BYTES, ReceiveBufferReleaser } from './gc-pressure.ts';
import { ImageSink } from './image-sink.ts';

export interface ImageTarget {
  name: string;
  length: number;
  hashes: Record<string, string>;
}

export interface DownloadOptions {
  attempts: number;
  onProgress?: (done: number, total: number) => void;
  /** Called with each transport error before a retry (for logs and reports). */
  onRetry?: (error: DownloadError, attempt: number) => void;
}

/** `<base>/targets/<dir/><sha256>.<basename>`: the TUF consistent-snapshot target URL. */
export function targetUrl(base: string, target: ImageTarget): string {
  const sha256 = target.hashes.sha256;
  if (!sha256) throw new LengthOrHashMismatchError(target.name, 'sha256', 'a sha256 hash', 'none');
  const slash = target.name.lastIndexOf('/');
  const dir = target.name.slice(0, slash + 1);
  const base1 = target.name.slice(slash + 1);
  return `${base}/targets/${dir.split('/').map(encodeURIComponent).join('/')}${sha256}.${encodeURIComponent(base1)}`;
}

function algorithms(target: ImageTarget): HashAlgorithm[] {
  const algs = Object.keys(target.hashes);
  for (const a of algs) if (!isSupportedHash(a)) throw new LengthOrHashMismatchError(target.name, 'hashes', 'sha256/sha512', a);
  return algs as HashAlgorithm[];
}

export class ImageCache {
  constructor(
    readonly dir: string,
    private readonly fetcher: HttpFetcher,
    private readonly baseUrl: string,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  path(target: ImageTarget): string {
    const sha = target.hashes.sha256 ?? Object.values(target.hashes)[0];
    if (!sha || !/^[0-9a-f]+$/i.test(sha)) throw new LengthOrHashMismatchError(target.name, 'hashes', 'a hex hash', String(sha));
    return join(this.dir, `${sha.toLowerCase()}.image`);
  }

  has(target: ImageTarget): boolean {
    const p = this.path(target);
    return existsSync(p) && statSync(p).size === target.length;
  }

  /** Bytes on disk for `targets`: a verified image's length, or its partial file's size (what a resumed download skips). */
  heldBytes(targets: readonly ImageTarget[]): number {
    let held = 0;
    for (const t of targets) {
      const partial = this.path(t).replace(/\.image$/, '.partial');
      held += this.has(t) ? t.length : existsSync(partial) ? Math.min(statSync(partial).size, t.length) : 0;
    }
    return held;
  }

  /**
   * Downloads and verifies `target` unless already present; resumes a partial file.
   * @throws LengthOrHashMismatchError, LengthLimitError (remote content);
   *   DownloadError / SlowRetrievalError after `attempts` transport failures.
   */
  async download(target: ImageTarget, options: DownloadOptions): Promise<string> {
    const final = this.path(target);
    if (this.has(target)) {
      options.onProgress?.(target.length, target.length);
      return final;
    }
    const partial = final.replace(/\.image$/, '.partial');
    let lastError: DownloadError | undefined;
    for (let attempt = 1; attempt <= options.attempts; attempt++) {
      try {
        await this.#attempt(target, partial, options.onProgress);
        renameSync(partial, final);
        fsyncDir(this.dir);
        return final;
      } catch (error) {
        if (error instanceof LengthLimitError || !(error instanceof DownloadError)) {
          rmSync(partial, { force: true });
          throw error;
        }
        lastError = error;
        options.onRetry?.(error, attempt);
      }
    }
    throw lastError!;
  }

  async #attempt(target: ImageTarget, partial: string, onProgress?: (done: number, total: number) => void): Promise<void> {
    let offset = existsSync(partial) ? statSync(partial).size : 0;
    if (offset > target.length) offset = 0;
    const url = targetUrl(this.baseUrl, target);
    const res = offset < target.length ? await this.fetcher.stream({ url, offset, maxLength: target.length, bulk: true }) : undefined;
    // The server ignored Range and sends the whole image: start over.
    if (res && res.start !== offset) offset = 0;
    const sink = new ImageSink(algorithms(target), target.length);
    try {
      if (offset > 0) {
        const releaser = new ReceiveBufferReleaser(RELEASE_EVERY_BYTES);
        for await (const chunk of createReadStream(partial, { start: 0, end: offset - 1, highWaterMark: 1 << 20 })) {
          await sink.push(chunk as Buffer);
          releaser.received((chunk as Buffer).byteLength);
        }
        await sink.flush();
      }
      await this.#receive(target, partial, url, offset, res, sink, onProgress);
      this.#check(target, partial, await sink.digestHex());
    } finally {
      await sink.close();
    }
  }

  async #receive(
    target: ImageTarget,
    partial: string,
    url: string,
    offset: number,
    res: { body: AsyncIterable<Uint8Array> } | undefined,
    sink: ImageSink,
    onProgress?: (done: number, total: number) => void,
  ): Promise<void> {
    const file = await open(partial, offset === 0 ? 'w' : 'r+');
    // Batches are written on the thread pool and hashed on workers while this thread
    // receives the next bytes (image-sink.ts). On any failure the bytes written so far
    // stay, so a retry resumes after them.
    sink.writeTo(file, offset);
    let done = offset;
    try {
      if (res) {
        for await (const chunk of res.body) {
          if (done + chunk.byteLength > target.length) throw new LengthLimitError(url, target.length, done + chunk.byteLength);
          await sink.push(chunk);
          done += chunk.byteLength;
          onProgress?.(done, target.length);
        }
      }
    } finally {
      await sink.flush().finally(() => file.truncate(sink.written).then(() => file.sync())).finally(() => file.close());
    }
    if (done !== target.length) throw new DownloadError(`${url}: ${done} of ${target.length} bytes`);
  }

  #check(target: ImageTarget, partial: string, actual: Record<string, string>): void {
    for (const [alg, expected] of Object.entries(target.hashes)) {
      if (actual[alg] !== expected.toLowerCase()) {
        rmSync(partial, { force: true });
        throw new LengthOrHashMismatchError(target.name, alg, expected, actual[alg] ?? 'none');
      }
    }
  }

  /** The verified image's bytes from `offset` to the end. */
  async *read(target: ImageTarget, offset: number): AsyncIterable<Uint8Array> {
    if (offset >= target.length) return;
    for await (const chunk of createReadStream(this.path(target), { start: offset, highWaterMark: 1 << 16 })) yield chunk as Buffer;
  }

  /**
   * Deletes the image (and any partial file) of each plan entry whose ECU is
   * in `activated`, unless an entry not yet activated needs the same file.
   */
  removeInstalled(plan: readonly (ImageTarget & { ecuSerial: string })[], activated: readonly string[]): void {
    const stillNeeded = new Set(plan.filter((p) => !activated.includes(p.ecuSerial)).map((p) => this.#pathIfValid(p)));
    for (const p of plan) {
      const file = this.#pathIfValid(p);
      if (file === undefined || !activated.includes(p.ecuSerial) || stillNeeded.has(file)) continue;
      rmSync(file, { force: true });
      rmSync(file.replace(/\.image$/, '.partial'), { force: true });
    }
  }

  /** The file of a target, or undefined when its hash cannot name one (an unverified plan entry may be anything). */
  #pathIfValid(target: ImageTarget): string | undefined {
    try {
      return this.path(target);
    } catch {
      return undefined;
    }
  }

  /** Drops every file not in `keep` (the images of the current plan). */
  prune(keep: readonly ImageTarget[]): void {
    const names = new Set(keep.flatMap((t) => {
      const p = this.#pathIfValid(t);
      return p === undefined ? [] : [p, p.replace(/\.image$/, '.partial')];
    }));
    for (const entry of readdir(this.dir)) if (!names.has(join(this.dir, entry))) rmSync(join(this.dir, entry), { force: true });
  }
}

function readdir(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}
