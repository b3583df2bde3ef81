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
 */
import { closeSync, createReadStream, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { DownloadError, LengthLimitError, LengthOrHashMismatchError, MultiHasher, isSupportedHash, type HashAlgorithm } from '@upfleet/core';
import type { HttpFetcher } from './fetcher.ts';

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
    let hasher = new MultiHasher(algorithms(target));
    let offset = existsSync(partial) ? statSync(partial).size : 0;
    if (offset > target.length) offset = 0;
    if (offset > 0) for await (const chunk of createReadStream(partial, { start: 0, end: offset - 1, highWaterMark: 1 << 20 })) hasher.update(chunk as Buffer);
    const url = targetUrl(this.baseUrl, target);
    const res = offset < target.length ? await this.fetcher.stream({ url, offset, maxLength: target.length }) : undefined;
    if (res && res.start !== offset) {
      // The server ignored Range and sends the whole image: start over.
      offset = 0;
      hasher = new MultiHasher(algorithms(target));
    }
    const file = await open(partial, offset === 0 ? 'w' : 'r+');
    try {
      let done = offset;
      if (res) {
        for await (const chunk of res.body) {
          if (done + chunk.byteLength > target.length) throw new LengthLimitError(url, target.length, done + chunk.byteLength);
          hasher.update(chunk);
          await file.write(chunk, 0, chunk.byteLength, done);
          done += chunk.byteLength;
          onProgress?.(done, target.length);
        }
      }
      await file.truncate(done);
      await file.sync();
      if (done !== target.length) throw new DownloadError(`${url}: ${done} of ${target.length} bytes`);
    } finally {
      await file.close();
    }
    this.#check(target, partial, hasher);
  }

  #check(target: ImageTarget, partial: string, hasher: MultiHasher): void {
    const actual = hasher.digestHex();
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

  /** Drops every file not in `keep` (the images of the current plan). */
  prune(keep: readonly ImageTarget[]): void {
    const names = new Set(keep.flatMap((t) => {
      const p = this.path(t);
      return [p, p.replace(/\.image$/, '.partial')];
    }));
    for (const entry of readdir(this.dir)) if (!names.has(join(this.dir, entry))) rmSync(join(this.dir, entry), { force: true });
  }
}

function readdir(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
