/** Small files replaced atomically (temp file, fsync, rename, fsync the directory), and JSON state kept in such a file. */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeFileSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncDir(dirname(path));
}

/** Makes the renames and removals in `dir` durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A JSON document in one file, replaced atomically on every write; `initial` is what it holds before the first. */
export class JsonFile<T> {
  constructor(readonly path: string, private readonly initial: () => T) {}

  read(): T {
    if (!existsSync(this.path)) return this.initial();
    return JSON.parse(readFileSync(this.path, 'utf8')) as T;
  }

  write(value: T): void {
    writeFileAtomic(this.path, JSON.stringify(value, null, 1));
  }
}
