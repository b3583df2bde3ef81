/**
 * Content-addressed image blobs: `<root>/<aa>/<sha256>`. A blob is written to
 * `<root>/tmp/` while it is hashed, fsynced, then renamed into place, so a
 * blob path either does not exist or holds exactly the bytes of its name.
 * Blobs are never modified or deleted in place. A blob on disk is not
 * published: only a committed index row makes a target downloadable.
 */
import { createReadStream, createWriteStream, mkdirSync, readdirSync, renameSync, rmSync, statSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { MultiHasher } from '@upfleet/core';
import { UploadTooLargeError } from './errors.ts';

export interface BlobInfo {
  length: number;
  sha256: string;
  sha512: string;
}

export class BlobStore {
  readonly tmpDir: string;

  constructor(readonly root: string) {
    this.tmpDir = join(root, 'tmp');
    mkdirSync(this.tmpDir, { recursive: true });
  }

  /**
   * Removes leftovers of writes cut short by a crash. Temp files carry the writer's pid, so
   * the uploads in progress of a live process (a server and a CLI may share DIR) are kept.
   */
  removeTemporaryFiles(): number {
    let removed = 0;
    for (const name of readdirSync(this.tmpDir)) {
      const pid = Number(name.split('-')[0]);
      const live = Number.isSafeInteger(pid) && pid > 0 && (pid === process.pid || isAlive(pid));
      if (live) continue;
      rmSync(join(this.tmpDir, name), { force: true });
      removed++;
    }
    return removed;
  }

  path(sha256: string): string {
    return join(this.root, sha256.slice(0, 2), sha256);
  }

  size(sha256: string): number | undefined {
    try {
      return statSync(this.path(sha256)).size;
    } catch {
      return undefined;
    }
  }

  /**
   * Streams `source` into the store, hashing as it goes.
   * @throws UploadTooLargeError past `maxLength` bytes (the temp file is removed).
   */
  async write(source: AsyncIterable<Uint8Array> | Readable, maxLength: number): Promise<BlobInfo> {
    const tmp = join(this.tmpDir, `${process.pid}-${randomBytes(8).toString('hex')}.part`);
    const hasher = new MultiHasher(['sha256', 'sha512']);
    const out = createWriteStream(tmp);
    const closed = new Promise<void>((resolve, reject) => {
      out.once('close', resolve);
      out.once('error', reject);
    });
    try {
      for await (const chunk of source as AsyncIterable<Uint8Array>) {
        if (hasher.length + chunk.byteLength > maxLength) throw new UploadTooLargeError(maxLength);
        hasher.update(chunk);
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
      }
      out.end();
      await closed;
      const fd = openSync(tmp, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      const length = hasher.length;
      const { sha256, sha512 } = hasher.digestHex() as { sha256: string; sha512: string };
      const dest = this.path(sha256);
      mkdirSync(join(this.root, sha256.slice(0, 2)), { recursive: true });
      renameSync(tmp, dest);
      fsyncDir(join(this.root, sha256.slice(0, 2)));
      return { length, sha256, sha512 };
    } catch (error) {
      out.destroy();
      await closed.catch(() => undefined);
      rmSync(tmp, { force: true });
      throw error;
    }
  }

  /** Bytes `start..end` (inclusive) of a blob. */
  read(sha256: string, start?: number, end?: number): Readable {
    return createReadStream(this.path(sha256), { start, end });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
