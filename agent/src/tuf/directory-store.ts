/**
 * A MetadataStore in a directory: one file per name, replaced atomically
 * (temp file in the same directory, fdatasync, rename), so a power cut leaves
 * the old bytes or the new ones, never a torn file.
 * Names are single path segments (the updater's `<quoted role>.json`); anything
 * that could leave the directory is refused. Temp files never end in `.json`.
 * Reads are synchronous: a metadata file is small (a missing one answers in tens of
 * microseconds on a quiet disk), and an asynchronous read would queue in libuv's
 * thread pool behind the writes in flight while the updater waits on it to decide
 * what to fetch. Only the conformance CLI and the benchmarks use this store; the
 * agent daemon keeps its metadata in SQLite.
 * Writes go through the callback API, promisified: node:fs/promises would load about ten
 * more modules (readline, watchers, dir) in every start of the conformance CLI.
 */
import {
  close as closeCallback,
  fdatasync as fdatasyncCallback,
  open as openCallback,
  readFileSync,
  rename as renameCallback,
  unlink as unlinkCallback,
  writeFile as writeFileCallback,
} from 'node:fs';
import { promisify } from 'node:util';
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
  async writeAtomic(name: string, bytes: Uint8Array, options?: { durable: boolean }): Promise<void> {
    await writeFileAtomic(this.#path(name), bytes, { sync: options?.durable ?? true });
  }

  /** @throws UsageError for a name that is not a plain file name; fs errors other than ENOENT. */
  async remove(name: string): Promise<void> {
    await unlink(this.#path(name)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  #path(name: string): string {
    if (name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) throw new UsageError(`not a plain file name: ${name}`);
    return join(this.dir, name);
  }
}

/**
 * temp file, fdatasync (unless `sync: false`, for a cache), rename; the temp file is removed on failure.
 * The data is on disk before the rename, so after a power cut the name holds the
 * old bytes or the new ones, never a torn file. The directory is not fsynced per
 * file: a rename lost to a power cut leaves the previous, still verified, version.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array, options: { sync: boolean } = { sync: true }): Promise<void> {
  const tmp = `${path}.${process.pid}.${++tempCounter}.tmp`;
  let renamed = false;
  try {
    if (options.sync) {
      const fd = await open(tmp, 'w', 0o644);
      try {
        await writeFileViaCallback(fd, bytes);
        await fdatasync(fd);
      } finally {
        await close(fd);
      }
    } else {
      // A cache: one call for open, write and close, through the callback API, which
      // costs the event loop about half what fs/promises does per file.
      await writeFileViaCallback(tmp, bytes, { mode: 0o644 });
    }
    await rename(tmp, path);
    renamed = true;
  } finally {
    if (!renamed) await unlink(tmp).catch(() => {});
  }
}

let tempCounter = 0;
const writeFileViaCallback = promisify(writeFileCallback);
const rename = promisify(renameCallback);
const open = promisify(openCallback);
const fdatasync = promisify(fdatasyncCallback);
const close = promisify(closeCallback);
const unlink = promisify(unlinkCallback);
