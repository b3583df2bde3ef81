/**
 * A MetadataStore in a directory: one file per name, replaced atomically
 * (temp file in the same directory, fsync, rename, fsync the directory), so a
 * power cut leaves the old bytes or the new ones, never a torn file.
 * Names are single path segments (the updater's `<quoted role>.json`); anything
 * that could leave the directory is refused. Temp files never end in `.json`.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '@upfleet/core/errors.ts';
import type { MetadataStore } from '@upfleet/core/updater.ts';

export class DirectoryMetadataStore implements MetadataStore {
  constructor(readonly dir: string) {}

  /** @throws UsageError for a name that is not a plain file name; fs errors other than ENOENT. */
  async read(name: string): Promise<Uint8Array | undefined> {
    try {
      return new Uint8Array(readFileSync(this.#path(name)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** @throws UsageError for a name that is not a plain file name; fs errors. */
  async writeAtomic(name: string, bytes: Uint8Array): Promise<void> {
    writeFileAtomic(this.#path(name), bytes);
  }

  #path(name: string): string {
    if (name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) throw new UsageError(`not a plain file name: ${name}`);
    return join(this.dir, name);
  }
}

/** temp file, fsync, rename, fsync the directory; the temp file is removed on failure. */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.${process.pid}.tmp`;
  let renamed = false;
  try {
    const fd = openSync(tmp, 'w', 0o644);
    try {
      for (let off = 0; off < bytes.byteLength; ) off += writeSync(fd, bytes, off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    renamed = true;
    const dirFd = openSync(join(path, '..'), 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } finally {
    if (!renamed) {
      try {
        unlinkSync(tmp);
      } catch {
        /* never created */
      }
    }
  }
}
