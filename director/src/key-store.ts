/**
 * The director's keys on disk (DIR/keys) and the fleet root (DIR/metadata).
 * - root.key: offline, encrypted with the operator passphrase; only `init` and
 *   root rotation need it, so it can live off the server.
 * - targets.key, snapshot.key, timestamp.key: online, encrypted with the online
 *   passphrase, which the server takes from UPFLEET_ONLINE_PASSPHRASE or from
 *   DIR/keys/online.passphrase (mode 0600) so it can start unattended.
 * - metadata/N.root.json: the root every device of the fleet trusts.
 * `init` refuses to overwrite an existing directory's keys.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  decryptKeyFile,
  Ed25519Signer,
  encryptKeyFile,
  expiresIn,
  KeyFileError,
  Metadata,
  Role,
  Root,
  UsageError,
  type Key,
  type Signer,
} from '@upfleet/core';

export const ONLINE_ROLES = ['targets', 'snapshot', 'timestamp'] as const;
export type OnlineRole = (typeof ONLINE_ROLES)[number];
export const ROOT_LIFETIME_S = 365 * 86400;

export interface InitOptions {
  dir: string;
  /** Protects the offline root key(s). */
  passphrase: string;
  /** Protects the online keys; a random one is written to keys/online.passphrase when absent. */
  onlinePassphrase?: string;
  /** Number of root keys and the root threshold (default 1 and 1). */
  rootKeys?: number;
  rootThreshold?: number;
  now?: Date;
}

export interface InitResult {
  rootKeyids: string[];
  onlineKeyids: Record<OnlineRole, string>;
  rootPath: string;
  onlinePassphraseFile?: string;
}

/**
 * Creates the keys and the fleet root version 1.
 * @throws UsageError when DIR already holds director keys or the options are inconsistent
 */
export function initKeys(options: InitOptions): InitResult {
  const { dir, passphrase } = options;
  const keysDir = join(dir, 'keys');
  if (existsSync(join(keysDir, 'targets.key'))) throw new UsageError(`${dir} already holds director keys`);
  const rootCount = options.rootKeys ?? 1;
  const threshold = options.rootThreshold ?? 1;
  if (!Number.isInteger(rootCount) || rootCount < 1 || !Number.isInteger(threshold) || threshold < 1 || threshold > rootCount) {
    throw new UsageError('need 1 <= root threshold <= root keys');
  }
  if (passphrase.length === 0) throw new UsageError('the root passphrase is empty');
  mkdirSync(keysDir, { recursive: true });
  mkdirSync(join(dir, 'metadata'), { recursive: true });

  const rootSigners = Array.from({ length: rootCount }, () => Ed25519Signer.generate());
  rootSigners.forEach((s, i) =>
    writeFileSync(join(keysDir, rootCount === 1 ? 'root.key' : `root-${i + 1}.key`), encryptKeyFile(s, passphrase), { mode: 0o600 }),
  );
  let onlinePassphrase = options.onlinePassphrase;
  let onlinePassphraseFile: string | undefined;
  if (onlinePassphrase === undefined) {
    onlinePassphrase = randomBytes(24).toString('base64url');
    onlinePassphraseFile = join(keysDir, 'online.passphrase');
    writeFileSync(onlinePassphraseFile, onlinePassphrase + '\n', { mode: 0o600 });
  }
  const online = {} as Record<OnlineRole, Ed25519Signer>;
  for (const role of ONLINE_ROLES) {
    online[role] = Ed25519Signer.generate();
    writeFileSync(join(keysDir, `${role}.key`), encryptKeyFile(online[role], onlinePassphrase), { mode: 0o600 });
  }

  const keys: Record<string, Key> = {};
  for (const s of [...rootSigners, ...Object.values(online)]) keys[s.key.keyid] = s.key;
  const root = new Root(1, expiresIn(options.now ?? new Date(), ROOT_LIFETIME_S), keys, {
    root: new Role(rootSigners.map((s) => s.key.keyid), threshold),
    targets: new Role([online.targets.key.keyid], 1),
    snapshot: new Role([online.snapshot.key.keyid], 1),
    timestamp: new Role([online.timestamp.key.keyid], 1),
  }, true);
  const md = new Metadata(root);
  for (const s of rootSigners) md.sign(s);
  const rootPath = join(dir, 'metadata', '1.root.json');
  writeFileSync(rootPath, md.toBytes());
  return {
    rootKeyids: rootSigners.map((s) => s.key.keyid),
    onlineKeyids: Object.fromEntries(ONLINE_ROLES.map((r) => [r, online[r].key.keyid])) as Record<OnlineRole, string>,
    rootPath,
    ...(onlinePassphraseFile && { onlinePassphraseFile }),
  };
}

/** The online passphrase: explicit, else UPFLEET_ONLINE_PASSPHRASE, else keys/online.passphrase. @throws KeyFileError */
export function onlinePassphraseFor(dir: string, explicit?: string): string {
  if (explicit !== undefined) return explicit;
  const env = process.env.UPFLEET_ONLINE_PASSPHRASE;
  if (env) return env;
  const file = join(dir, 'keys', 'online.passphrase');
  if (!existsSync(file)) throw new KeyFileError('no online passphrase: set UPFLEET_ONLINE_PASSPHRASE or write keys/online.passphrase');
  return readFileSync(file, 'utf8').trim();
}

/** Decrypts the three online keys. @throws KeyFileError */
export function loadOnlineSigners(dir: string, passphrase: string): Record<OnlineRole, Signer> {
  const out = {} as Record<OnlineRole, Signer>;
  for (const role of ONLINE_ROLES) {
    const path = join(dir, 'keys', `${role}.key`);
    if (!existsSync(path)) throw new KeyFileError(`missing ${path}: run upfleet-director init`);
    out[role] = decryptKeyFile(new Uint8Array(readFileSync(path)), passphrase, path);
  }
  return out;
}

/** Every root version in DIR/metadata, oldest first: version -> bytes. @throws UsageError when there is none */
export function loadRoots(dir: string): Map<number, Uint8Array> {
  const metaDir = join(dir, 'metadata');
  const versions = existsSync(metaDir)
    ? readdirSync(metaDir).map((n) => /^(\d+)\.root\.json$/.exec(n)?.[1]).filter((v): v is string => v !== undefined).map(Number)
    : [];
  if (versions.length === 0) throw new UsageError(`no root metadata in ${metaDir}: run upfleet-director init`);
  versions.sort((a, b) => a - b);
  const roots = new Map<number, Uint8Array>();
  for (const v of versions) roots.set(v, new Uint8Array(readFileSync(join(metaDir, `${v}.root.json`))));
  return roots;
}

/** Checks that the online keys are the ones the latest root names. @throws KeyFileError */
export function checkSignersMatchRoot(rootBytes: Uint8Array, signers: Record<OnlineRole, Signer>): void {
  const root = Metadata.fromBytes(rootBytes, 'root').signed;
  for (const role of ONLINE_ROLES) {
    if (!root.roles[role].keyids.includes(signers[role].key.keyid)) {
      throw new KeyFileError(`the ${role} key is not a ${role} key of root version ${root.version}`);
    }
  }
}
