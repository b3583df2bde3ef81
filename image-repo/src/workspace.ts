/**
 * The layout of a repository directory (DIR), shared by the offline tool and
 * the server:
 *
 *   DIR/upfleet-repo.json    settings: expiry periods (seconds) per role
 *   DIR/keys/offline/<role>-<keyid16>.key.json   root, targets: encrypted with the offline
 *                            passphrase; they never go to the server
 *   DIR/keys/online/<role>-<keyid16>.key.json    snapshot, timestamp: encrypted with the online
 *                            passphrase; the server's copy of DIR holds only these
 *   DIR/keys/online/passphrase   the online passphrase, when init generated it
 *   DIR/keys/{offline,online}/retired/   keys replaced by rotate-key
 *   DIR/metadata/            working copy: the metadata this tool signed and
 *                            published last (N.root.json, root.json, targets.json, <role>.json)
 *   DIR/server/index.sqlite  the server's index (published metadata, WAL)
 *   DIR/server/blobs/        content-addressed images (blobs/<aa>/<sha256>, tmp/)
 *
 * Every file is written atomically (temp + fsync + rename). Key files and the
 * online passphrase are created 0600 in 0700 directories: the modes are set at
 * creation, so no other user can open them even for an instant.
 */
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { decryptKeyFile, readPublicKey, UsageError, type Ed25519Signer, type Key } from '@upfleet/core';
import { OldKeyLayoutError, WorkspaceError } from './errors.ts';

/** The roles whose keys the server holds (TUF 1.0 6.1: snapshot and timestamp may be online). */
export const ONLINE_ROLES: ReadonlySet<string> = new Set(['snapshot', 'timestamp']);

/** Mode of key files and of the online passphrase file; their directories get 0700. */
export const SECRET_FILE_MODE = 0o600;
export const SECRET_DIR_MODE = 0o700;

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
  /** root and targets keys: the operator's machine only. */
  get offlineKeysDir(): string {
    return join(this.keysDir, 'offline');
  }
  /** snapshot and timestamp keys: the only keys a server's copy of DIR holds. */
  get onlineKeysDir(): string {
    return join(this.keysDir, 'online');
  }
  get onlinePassphraseFile(): string {
    return join(this.onlineKeysDir, 'passphrase');
  }
  /** Where the key files of a top-level role live. */
  keysDirOf(role: string): string {
    return ONLINE_ROLES.has(role) ? this.onlineKeysDir : this.offlineKeysDir;
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
    return join(this.keysDirOf(role), `${role}-${key.keyid.slice(0, 16)}.key.json`);
  }

  /** Writes a key file (or the online passphrase) 0600, in keys/ and its subdirectories, all 0700. */
  writeSecret(path: string, data: string | Uint8Array): void {
    this.ensureSecretDir(dirname(path));
    writeAtomic(path, data, SECRET_FILE_MODE);
  }

  /** Creates `dir` (under keys/) and the directories between it and keys/, each 0700. */
  ensureSecretDir(dir: string): void {
    const rel = relative(this.keysDir, dir);
    if (rel.startsWith('..') || isAbsolute(rel)) throw new UsageError(`${dir} is not under ${this.keysDir}`);
    // DIR itself keeps the default mode (a recursive mkdir would give it 0700 too).
    mkdirSync(this.dir, { recursive: true });
    let at = this.keysDir;
    for (const part of ['', ...rel.split(sep).filter(Boolean)]) {
      at = join(at, part);
      mkdirSync(at, { recursive: true, mode: SECRET_DIR_MODE });
      // mkdir's mode applies only to directories it creates (a key dir of an old layout may be 0755).
      chmodSync(at, SECRET_DIR_MODE);
    }
  }

  /** Key files of a role in its keys directory, with their public keys (no passphrase needed). */
  keyFiles(role: string): Array<{ path: string; key: Key }> {
    const dir = this.keysDirOf(role);
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((n) => n.startsWith(`${role}-`) && n.endsWith('.key.json'))
      .sort()
      .map((n) => {
        const path = join(dir, n);
        return { path, key: readPublicKey(readFileSync(path)) };
      });
  }

  /**
   * Key files still in keys/ itself: the layout before offline and online keys were split,
   * when one passphrase protected all of them.
   * @throws OldKeyLayoutError naming them and `upfleet-repo migrate-keys`
   */
  checkKeyLayout(): void {
    if (!existsSync(this.keysDir)) return;
    const old = readdirSync(this.keysDir).filter((n) => n.endsWith('.key.json')).sort();
    if (old.length > 0) throw new OldKeyLayoutError(this.keysDir, old);
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
export function writeAtomic(path: string, data: string | Uint8Array, mode = 0o666): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  // The temp file is created with `mode` (O_EXCL), so a secret is never readable by others.
  writeFileSync(tmp, data, { mode, flag: 'wx' });
  const fd = openSync(tmp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
