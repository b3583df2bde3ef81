/**
 * The layout of a repository directory (DIR), shared by the offline tool and
 * the server:
 *
 *   DIR/upfleet-repo.json    settings: expiry periods (seconds) per role
 *   DIR/keys/<role>-<keyid16>.key.json   encrypted keys: root, targets (offline),
 *                                        snapshot, timestamp (online, for the server)
 *   DIR/keys/retired/        keys replaced by rotate-key
 *   DIR/metadata/            working copy: the metadata this tool signed and
 *                            published last (N.root.json, root.json, targets.json, <role>.json)
 *   DIR/server/index.sqlite  the server's index (published metadata, WAL)
 *   DIR/server/blobs/        content-addressed images (blobs/<aa>/<sha256>, tmp/)
 *
 * Every file is written atomically (temp + fsync + rename).
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { decryptKeyFile, readPublicKey, type Ed25519Signer, type Key } from '@upfleet/core';
import { WorkspaceError } from './errors.ts';

export interface Expiries {
  root: number;
  targets: number;
  delegated: number;
  snapshot: number;
  timestamp: number;
}

export const DEFAULT_EXPIRIES: Expiries = {
  root: 365 * 86400,
  targets: 90 * 86400,
  delegated: 90 * 86400,
  snapshot: 7 * 86400,
  timestamp: 86400,
};

export interface Settings {
  format: 'upfleet-repo/1';
  expiries: Expiries;
}

export class Workspace {
  constructor(readonly dir: string) {}

  get settingsFile(): string {
    return join(this.dir, 'upfleet-repo.json');
  }
  get keysDir(): string {
    return join(this.dir, 'keys');
  }
  get metadataDir(): string {
    return join(this.dir, 'metadata');
  }
  get serverDir(): string {
    return join(this.dir, 'server');
  }
  get indexFile(): string {
    return join(this.serverDir, 'index.sqlite');
  }
  get blobsDir(): string {
    return join(this.serverDir, 'blobs');
  }

  isInitialised(): boolean {
    return existsSync(this.settingsFile);
  }

  /**
   * The settings, defaults filled in. A hand-edited file is checked here: a bad period would
   * otherwise sign metadata with an invalid or past expiry date.
   * @throws WorkspaceError when DIR was never initialised or its settings file is malformed.
   */
  settings(): Settings {
    if (!this.isInitialised()) throw new WorkspaceError(`${this.dir} is not a repository directory (run upfleet-repo init)`);
    const bad = (why: string) => new WorkspaceError(`${this.settingsFile}: ${why}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(this.settingsFile, 'utf8'));
    } catch (error) {
      throw bad(`not JSON (${(error as Error).message})`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw bad('not a JSON object');
    const { format, expiries = {} } = parsed as { format?: unknown; expiries?: unknown };
    if (format !== undefined && format !== 'upfleet-repo/1') throw bad(`unknown format ${JSON.stringify(format)}`);
    if (typeof expiries !== 'object' || expiries === null || Array.isArray(expiries)) throw bad('expiries must be an object');
    for (const [role, seconds] of Object.entries(expiries)) {
      if (!(role in DEFAULT_EXPIRIES)) throw bad(`expiries.${role}: not a role (${Object.keys(DEFAULT_EXPIRIES).join(', ')})`);
      if (!Number.isSafeInteger(seconds) || (seconds as number) < 1) throw bad(`expiries.${role} must be a whole number of seconds >= 1`);
    }
    return { format: 'upfleet-repo/1', expiries: { ...DEFAULT_EXPIRIES, ...(expiries as Partial<Expiries>) } };
  }

  writeSettings(settings: Settings): void {
    writeAtomic(this.settingsFile, JSON.stringify(settings, null, 2) + '\n');
  }

  keyFileName(role: string, key: Key): string {
    return join(this.keysDir, `${role}-${key.keyid.slice(0, 16)}.key.json`);
  }

  /** Key files of a role in keys/, with their public keys (no passphrase needed). */
  keyFiles(role: string): Array<{ path: string; key: Key }> {
    if (!existsSync(this.keysDir)) return [];
    return readdirSync(this.keysDir)
      .filter((n) => n.startsWith(`${role}-`) && n.endsWith('.key.json'))
      .sort()
      .map((n) => {
        const path = join(this.keysDir, n);
        return { path, key: readPublicKey(readFileSync(path)) };
      });
  }

  /**
   * Decrypts up to `limit` keys of `role` among `keyids` (only as many as needed: scrypt is slow).
   * @throws KeyFileError on a wrong passphrase
   */
  signers(role: string, keyids: readonly string[], limit: number, passphrase: string): Ed25519Signer[] {
    const files = this.keyFiles(role).filter((f) => keyids.includes(f.key.keyid));
    return files.slice(0, limit).map((f) => decryptKeyFile(readFileSync(f.path), passphrase, f.path));
  }

  readMetadata(name: string): Uint8Array | undefined {
    const path = join(this.metadataDir, name);
    return existsSync(path) ? new Uint8Array(readFileSync(path)) : undefined;
  }

  writeMetadata(name: string, bytes: Uint8Array): void {
    writeAtomic(join(this.metadataDir, name), bytes);
  }

  /** N.root.json files of the working copy, in version order. */
  rootVersions(): number[] {
    if (!existsSync(this.metadataDir)) return [];
    return readdirSync(this.metadataDir)
      .map((n) => /^(\d+)\.root\.json$/.exec(n)?.[1])
      .filter((v): v is string => v !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
  }
}

/** temp + fsync + rename, so readers see the old file or the new one. */
export function writeAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, data);
  const fd = openSync(tmp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
