/**
 * The offline tool's operations, usable in-process (demo, tests) and by the
 * CLI. Each one reads the verified published state from a Backend, edits a
 * copy, signs it with keys decrypted from key files (only as many as the
 * threshold needs: scrypt is slow), publishes the batch, and then records
 * what it signed in the working copy (DIR/metadata). A failure before the
 * publish leaves the repository and the working copy as they were.
 *
 * Two passphrases: the offline one protects root and targets keys (and is the
 * one a supplier gives for its own key files); the online one protects the
 * snapshot and timestamp keys the server holds. An operation asks for the
 * online one only when it must sign snapshot and timestamp itself (publishing
 * into DIR's own index) or encrypt a new online key (rotate-key); with
 * --remote the server signs them and the online passphrase is never needed.
 */
import { chmodSync, existsSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, join } from 'node:path';
import {
  Delegations,
  DelegatedRole,
  Ed25519Signer,
  encryptKeyFile,
  expiresIn,
  Key,
  KeyFileError,
  Metadata,
  Role,
  Root,
  TargetFile,
  Targets,
  UsageError,
  decryptKeyFile,
  readPublicKey,
  type RoleType,
  type Signer,
} from '@upfleet/core';
import { LocalBackend, RemoteBackend, type Backend } from './backends.ts';
import { NotFoundError, WorkspaceError } from './errors.ts';
import type { ImageProgress } from './image-progress.ts';
import { checkRoleName, checkTargetName } from './names.ts';
import { checkSemver } from './semver.ts';
import { MemoryKeyring, onlinePassphrase } from './online-keys.ts';
import type { PublishResult } from './publisher.ts';
import { RepoStore } from './repo-store.ts';
import { findDelegation, type RepoState } from './verify.ts';
import { DEFAULT_EXPIRIES, ONLINE_ROLES, SECRET_FILE_MODE, Workspace, writeAtomic, type Expiries } from './workspace.ts';

export interface RepoContext {
  dir: string;
  /**
   * The offline passphrase: root and targets key files (a supplier's own key files for
   * sign-delegated). Called only when a key must be decrypted or encrypted.
   */
  passphrase: string | (() => string);
  /**
   * The online passphrase of DIR/keys/online, needed only without `remote` (signing snapshot and
   * timestamp into DIR's own index) and by rotate-key snapshot|timestamp without a new key file.
   * Default: DIR/keys/online/passphrase.
   */
  onlinePassphrase?: string | (() => string);
  /** Publish to a server instead of DIR's own index. */
  remote?: { url: string; token: string };
  now?: () => Date;
  /** Hears images being hashed or uploaded (the CLI draws a progress line). */
  onImageProgress?: (p: ImageProgress) => void;
}

interface Session {
  ws: Workspace;
  backend: Backend;
  passphrase: () => string;
  onlinePassphrase: () => string;
  now: Date;
  expiries: Expiries;
  onImageProgress?: (p: ImageProgress) => void;
}

async function withSession<T>(ctx: RepoContext, fn: (s: Session) => Promise<T>): Promise<T> {
  const ws = new Workspace(ctx.dir);
  const passphrase = typeof ctx.passphrase === 'function' ? ctx.passphrase : () => ctx.passphrase as string;
  if (!ctx.remote && !ws.isInitialised()) throw new WorkspaceError(`${ctx.dir} is not a repository directory (run upfleet-repo init, or use --remote)`);
  const expiries = ws.isInitialised() ? ws.settings().expiries : DEFAULT_EXPIRIES;
  ws.checkKeyLayout();
  const online = onlinePassphrase(ws, ctx.onlinePassphrase);
  const backend = ctx.remote ? new RemoteBackend(ctx.remote.url, ctx.remote.token, ws) : new LocalBackend(ws, online);
  try {
    return await fn({ ws, backend, passphrase, onlinePassphrase: online, now: (ctx.now ?? (() => new Date()))(), expiries, onImageProgress: ctx.onImageProgress });
  } finally {
    backend.close();
  }
}

async function currentState(s: Session): Promise<RepoState> {
  const state = await s.backend.state(s.now);
  if (!state) throw new WorkspaceError(`${s.backend.description} has no published root yet`);
  return state;
}

/** The next version of a targets role, unsigned; version 1 when there is none yet. */
function copyTargets(md: Metadata<Targets> | undefined, s: Session, expiry: number): Metadata<Targets> {
  if (!md) return new Metadata(new Targets(1, expiresIn(s.now, expiry), {}));
  const copy = Metadata.fromBytes(md.toBytes(), 'targets');
  copy.signatures.clear();
  copy.signed.version += 1;
  copy.signed.expires = expiresIn(s.now, expiry);
  return copy;
}

function copyRoot(md: Metadata<Root>, s: Session): Metadata<Root> {
  const copy = Metadata.fromBytes(md.toBytes(), 'root');
  copy.signatures.clear();
  copy.signed.version += 1;
  copy.signed.expires = expiresIn(s.now, s.expiries.root);
  return copy;
}

/** Signs with the threshold of a top-level role's keys found in DIR/keys. @throws WorkspaceError, KeyFileError */
function signWithRole(s: Session, md: Metadata, root: Root, role: RoleType): void {
  const { keyids, threshold } = root.roles[role];
  const signers = s.ws.signers(role, keyids, threshold, s.passphrase());
  if (signers.length < threshold) {
    throw new WorkspaceError(`${s.ws.keysDirOf(role)} holds ${signers.length} of the ${threshold} ${role} key(s) needed to sign`);
  }
  for (const signer of signers) md.sign(signer);
}

function recordWorkingCopy(s: Session, files: Record<string, Metadata>): void {
  for (const [name, md] of Object.entries(files)) s.ws.writeMetadata(name, md.toPrettyBytes());
}

// ---------------------------------------------------------------- init

export interface InitOptions {
  dir: string;
  /** The offline passphrase: root and targets keys. */
  passphrase: string;
  /**
   * The online passphrase: snapshot and timestamp keys. When absent a random one is generated and
   * written to DIR/keys/online/passphrase (0600), so the server can start unattended.
   */
  onlinePassphrase?: string;
  rootKeys?: number;
  rootThreshold?: number;
  expiries?: Partial<Expiries>;
  now?: () => Date;
}

export interface InitResult {
  dir: string;
  keyids: Record<RoleType, string[]>;
  versions: Record<string, number>;
  /** Where the generated online passphrase was written (absent when `onlinePassphrase` was given). */
  onlinePassphraseFile?: string;
  /** The new signers, for in-process callers that want to avoid decrypting them again. */
  signers: { root: Ed25519Signer[]; targets: Ed25519Signer; snapshot: Ed25519Signer; timestamp: Ed25519Signer };
}

/**
 * Creates keys for every role, root version 1 and an empty targets version 1, and publishes them
 * (with snapshot and timestamp) into DIR's index. Root and targets keys go to keys/offline/,
 * encrypted with the offline passphrase; snapshot and timestamp keys to keys/online/, encrypted
 * with the online passphrase; every key file 0600, every key directory 0700.
 * @throws UsageError for bad counts or passphrases, WorkspaceError when DIR is already a repository.
 */
export function initRepository(options: InitOptions): InitResult {
  const rootKeys = options.rootKeys ?? 1;
  const rootThreshold = options.rootThreshold ?? 1;
  if (!Number.isSafeInteger(rootKeys) || rootKeys < 1) throw new UsageError('--root-keys must be at least 1');
  if (!Number.isSafeInteger(rootThreshold) || rootThreshold < 1 || rootThreshold > rootKeys) {
    throw new UsageError(`--root-threshold must be between 1 and --root-keys (${rootKeys})`);
  }
  if (!options.passphrase) throw new UsageError('an empty passphrase is not allowed');
  if (options.onlinePassphrase !== undefined) {
    if (!options.onlinePassphrase) throw new UsageError('an empty online passphrase is not allowed');
    // The server holds the online passphrase; the same one would open the offline keys too.
    if (options.onlinePassphrase === options.passphrase) throw new UsageError('the online passphrase must differ from the offline one');
  }
  const ws = new Workspace(options.dir);
  if (ws.isInitialised()) throw new WorkspaceError(`${options.dir} is already a repository directory`);
  const now = (options.now ?? (() => new Date()))();
  const expiries = { ...DEFAULT_EXPIRIES, ...options.expiries };

  const signers = {
    root: Array.from({ length: rootKeys }, () => Ed25519Signer.generate()),
    targets: Ed25519Signer.generate(),
    snapshot: Ed25519Signer.generate(),
    timestamp: Ed25519Signer.generate(),
  };
  let online = options.onlinePassphrase;
  let onlinePassphraseFile: string | undefined;
  if (online === undefined) {
    online = randomBytes(24).toString('base64url');
    onlinePassphraseFile = ws.onlinePassphraseFile;
    ws.writeSecret(onlinePassphraseFile, online + '\n');
  }
  const save = (role: string, signer: Ed25519Signer) =>
    ws.writeSecret(ws.keyFileName(role, signer.key), encryptKeyFile(signer, ONLINE_ROLES.has(role) ? online : options.passphrase));
  signers.root.forEach((k) => save('root', k));
  save('targets', signers.targets);
  save('snapshot', signers.snapshot);
  save('timestamp', signers.timestamp);

  const keys: Record<string, Key> = {};
  const roleOf = (list: Ed25519Signer[], threshold: number) => {
    for (const s of list) keys[s.keyid] = s.key;
    return new Role(list.map((s) => s.keyid), threshold);
  };
  const roles = {
    root: roleOf(signers.root, rootThreshold),
    targets: roleOf([signers.targets], 1),
    snapshot: roleOf([signers.snapshot], 1),
    timestamp: roleOf([signers.timestamp], 1),
  };
  const root = new Metadata(new Root(1, expiresIn(now, expiries.root), keys, roles, true));
  for (const s of signers.root) root.sign(s);
  const targets = new Metadata(new Targets(1, expiresIn(now, expiries.targets), {}));
  targets.sign(signers.targets);
  ws.writeMetadata('1.root.json', root.toPrettyBytes());
  ws.writeMetadata('root.json', root.toPrettyBytes());
  ws.writeMetadata('targets.json', targets.toPrettyBytes());
  ws.writeSettings({ format: 'upfleet-repo/1', expiries });

  const store = new RepoStore({
    workspace: ws,
    keyring: new MemoryKeyring([signers.snapshot, signers.timestamp]),
    snapshotExpiry: expiries.snapshot,
    timestampExpiry: expiries.timestamp,
  });
  try {
    const result = store.bootstrap(ws, now)!;
    return {
      dir: options.dir,
      keyids: Object.fromEntries(Object.entries(roles).map(([r, role]) => [r, role.keyids])) as Record<RoleType, string[]>,
      versions: result.versions,
      ...(onlinePassphraseFile && { onlinePassphraseFile }),
      signers,
    };
  } finally {
    store.close();
  }
}

// ---------------------------------------------------------------- keys

/** Creates an encrypted key file (a supplier's delegated key, or a key to rotate to). @throws WorkspaceError when the file exists */
export function generateKeyFile(path: string, passphrase: string): Key {
  if (!passphrase) throw new UsageError('an empty passphrase is not allowed');
  // Overwriting a key file would lose the only copy of a supplier's private key.
  if (existsSync(path)) throw new WorkspaceError(`${path} exists: refusing to overwrite a key file`);
  const signer = Ed25519Signer.generate();
  writeAtomic(path, encryptKeyFile(signer, passphrase), SECRET_FILE_MODE);
  return signer.key;
}

/** A public key from an encrypted key file or from a `{ keytype, scheme, keyval }` JSON file. @throws KeyFileError */
export function loadPublicKey(path: string): Key {
  const bytes = readFileSync(path);
  try {
    return readPublicKey(bytes);
  } catch (error) {
    try {
      return Key.fromJSON(JSON.parse(bytes.toString('utf8')));
    } catch {
      throw new KeyFileError(`${path}: neither a key file nor a public key`, { cause: error });
    }
  }
}

export interface MigrateKeysOptions {
  dir: string;
  /** The one passphrase of the old layout; it stays the offline passphrase. */
  passphrase: string;
  /** The new online passphrase; generated into DIR/keys/online/passphrase when absent. */
  onlinePassphrase?: string;
}

export interface MigrateKeysResult {
  offline: string[];
  online: string[];
  onlinePassphraseFile?: string;
}

/**
 * Splits the keys of a directory made before offline and online keys were separated (every key
 * file in DIR/keys under one passphrase): root and targets key files, and keys/retired/, move to
 * keys/offline/ unchanged; snapshot and timestamp keys are re-encrypted with the online
 * passphrase into keys/online/. Every online key is decrypted before anything moves, so a wrong
 * passphrase changes nothing; each new file is written before its old copy goes, so a re-run
 * finishes an interrupted migration.
 * @throws WorkspaceError when there is nothing to migrate, KeyFileError on a wrong passphrase
 */
export function migrateKeys(options: MigrateKeysOptions): MigrateKeysResult {
  const ws = new Workspace(options.dir);
  ws.settings();
  if (!options.passphrase) throw new UsageError('an empty passphrase is not allowed');
  if (options.onlinePassphrase !== undefined && (!options.onlinePassphrase || options.onlinePassphrase === options.passphrase)) {
    throw new UsageError('the online passphrase must be non-empty and differ from the offline one');
  }
  const old = existsSync(ws.keysDir) ? readdirSync(ws.keysDir).filter((n) => n.endsWith('.key.json')).sort() : [];
  if (old.length === 0) throw new WorkspaceError(`${ws.keysDir} holds no key files of the old layout: nothing to migrate`);
  const isOnline = (name: string) => ONLINE_ROLES.has(name.slice(0, name.indexOf('-')));

  // An interrupted run already generated the online passphrase: keep it.
  const given = options.onlinePassphrase ?? (existsSync(ws.onlinePassphraseFile) ? onlinePassphrase(ws)() : undefined);
  const online = given ?? randomBytes(24).toString('base64url');
  const onlineFiles = old.filter(isOnline).map((name) => {
    const path = join(ws.keysDir, name);
    return { name, bytes: encryptKeyFile(decryptKeyFile(readFileSync(path), options.passphrase, path), online) };
  });
  const onlinePassphraseFile = given === undefined ? ws.onlinePassphraseFile : undefined;
  if (onlinePassphraseFile) ws.writeSecret(onlinePassphraseFile, online + '\n');

  ws.ensureSecretDir(ws.keysDir);
  for (const { name, bytes } of onlineFiles) {
    ws.writeSecret(join(ws.onlineKeysDir, name), bytes);
    rmSync(join(ws.keysDir, name));
  }
  const moveOffline = (from: string, toDir: string) => {
    ws.ensureSecretDir(toDir);
    const to = join(toDir, basename(from));
    renameSync(from, to);
    chmodSync(to, SECRET_FILE_MODE);
  };
  const offline = old.filter((n) => !isOnline(n));
  for (const name of offline) moveOffline(join(ws.keysDir, name), ws.offlineKeysDir);
  const retired = join(ws.keysDir, 'retired');
  if (existsSync(retired)) {
    // Retired online keys are still under the old passphrase: they stay offline with the rest.
    for (const name of readdirSync(retired)) moveOffline(join(retired, name), join(ws.offlineKeysDir, 'retired'));
    rmdirSync(retired);
  }
  return { offline, online: onlineFiles.map((f) => f.name), ...(onlinePassphraseFile && { onlinePassphraseFile }) };
}

// ---------------------------------------------------------------- targets

export interface TargetSpec {
  file: string;
  name: string;
  hardwareIds: string[];
  version: string;
  releaseCounter?: number;
}

function checkSpec(spec: TargetSpec): void {
  checkTargetName(spec.name);
  if (spec.hardwareIds.length === 0) throw new UsageError('at least one --hardware-id is needed');
  if (!spec.version) throw new UsageError('--version is needed');
  checkSemver(spec.version);
  if (spec.releaseCounter !== undefined && (!Number.isSafeInteger(spec.releaseCounter) || spec.releaseCounter < 0)) {
    throw new UsageError('--release-counter must be an integer >= 0');
  }
}

async function stageTarget(s: Session, into: Targets, spec: TargetSpec): Promise<TargetFile> {
  const image = await s.backend.uploadImage(spec.name, spec.file, s.onImageProgress);
  const previous = into.targets[spec.name]?.custom?.releaseCounter;
  const info = new TargetFile(image.length, { sha256: image.sha256, sha512: image.sha512 }, {
    hardwareIds: [...spec.hardwareIds],
    releaseCounter: spec.releaseCounter ?? (typeof previous === 'number' ? previous : 0),
    version: spec.version,
  });
  into.targets[spec.name] = info;
  return info;
}

export interface ChangeResult extends PublishResult {
  role: string;
  version: number;
}

/** Signs a new top-level targets with the offline targets key(s), publishes it, then records it in the working copy. */
async function publishTargets(s: Session, next: Metadata<Targets>, root: Root): Promise<ChangeResult> {
  signWithRole(s, next, root, 'targets');
  const result = await s.backend.publish({ targets: next.toBytes() }, s.now);
  recordWorkingCopy(s, { 'targets.json': next });
  return { ...result, role: 'targets', version: next.signed.version };
}

/** Adds (or replaces) a target in the top-level targets role, signed with the offline targets key(s). */
export async function addTarget(ctx: RepoContext, spec: TargetSpec): Promise<ChangeResult & { target: ReturnType<TargetFile['toJSON']> }> {
  checkSpec(spec);
  return withSession(ctx, async (s) => {
    const state = await currentState(s);
    const next = copyTargets(state.targets, s, s.expiries.targets);
    const info = await stageTarget(s, next.signed, spec);
    return { ...(await publishTargets(s, next, state.root.signed)), target: info.toJSON() };
  });
}

/** Removes a target from the top-level targets role. @throws NotFoundError */
export async function removeTarget(ctx: RepoContext, name: string): Promise<ChangeResult> {
  checkTargetName(name);
  return withSession(ctx, async (s) => {
    const state = await currentState(s);
    if (!state.targets.signed.targets[name]) throw new NotFoundError(`target ${name}`);
    const next = copyTargets(state.targets, s, s.expiries.targets);
    delete next.signed.targets[name];
    return publishTargets(s, next, state.root.signed);
  });
}

// ---------------------------------------------------------------- delegations

export interface DelegateOptions {
  role: string;
  paths: string[];
  hardwareIds: string[];
  /** Public keys of the role (from key files or public key files). */
  keys: Key[];
  threshold: number;
  terminating?: boolean;
}

/** Adds or replaces a delegation of the top-level targets role to a supplier. */
export async function delegate(ctx: RepoContext, options: DelegateOptions): Promise<ChangeResult> {
  checkRoleName(options.role);
  if (options.paths.length === 0) throw new UsageError('at least one --paths pattern is needed');
  if (options.keys.length === 0) throw new UsageError('at least one --key is needed');
  const keyids = [...new Set(options.keys.map((k) => k.keyid))];
  if (!Number.isSafeInteger(options.threshold) || options.threshold < 1 || options.threshold > keyids.length) {
    throw new UsageError(`--threshold must be between 1 and the number of keys (${keyids.length})`);
  }
  return withSession(ctx, async (s) => {
    const state = await currentState(s);
    const next = copyTargets(state.targets, s, s.expiries.targets);
    const delegations = (next.signed.delegations ??= new Delegations({}, []));
    delegations.roles ??= [];
    const entry = new DelegatedRole(options.role, keyids, options.threshold, options.terminating ?? false, [...options.paths], undefined,
      options.hardwareIds.length > 0 ? [...options.hardwareIds] : undefined);
    const at = delegations.roles.findIndex((r) => r.name === options.role);
    if (at >= 0) delegations.roles[at] = entry;
    else delegations.roles.push(entry);
    for (const key of options.keys) delegations.keys[key.keyid] = key;
    const used = new Set(delegations.roles.flatMap((r) => r.keyids));
    for (const id of Object.keys(delegations.keys)) if (!used.has(id)) delete delegations.keys[id];
    return publishTargets(s, next, state.root.signed);
  });
}

export interface SignDelegatedOptions {
  role: string;
  /** The supplier's encrypted key file(s); together they must reach the role's threshold. */
  keyFiles: string[];
  add?: TargetSpec[];
  remove?: string[];
}

/**
 * A supplier signs a new version of its delegated role (adding/removing targets), with its own keys.
 * @throws DelegationViolationError when the role is not delegated, WorkspaceError for keys the role does not list
 */
export async function signDelegated(ctx: RepoContext, options: SignDelegatedOptions): Promise<ChangeResult> {
  checkRoleName(options.role);
  if (options.keyFiles.length === 0) throw new UsageError('at least one --key file is needed');
  for (const spec of options.add ?? []) checkSpec(spec);
  for (const name of options.remove ?? []) checkTargetName(name);
  return withSession(ctx, async (s) => {
    const state = await currentState(s);
    const found = findDelegation(state, options.role);
    if (!found) throw new WorkspaceError(`no role delegates ${options.role}; run upfleet-repo delegate first`);
    const signers: Signer[] = options.keyFiles.map((f) => {
      const bytes = readFileSync(f);
      if (!found.entry.keyids.includes(readPublicKey(bytes).keyid)) throw new WorkspaceError(`${basename(f)} is not a key of ${options.role}`);
      return decryptKeyFile(bytes, s.passphrase(), f);
    });
    const next = copyTargets(state.delegated.get(options.role), s, s.expiries.delegated);
    for (const name of options.remove ?? []) {
      if (!next.signed.targets[name]) throw new NotFoundError(`target ${name} in ${options.role}`);
      delete next.signed.targets[name];
    }
    for (const spec of options.add ?? []) await stageTarget(s, next.signed, spec);
    for (const signer of signers) next.sign(signer);
    const result = await s.backend.publish({ delegated: { [options.role]: next.toBytes() } }, s.now);
    recordWorkingCopy(s, { [`${options.role}.json`]: next });
    return { ...result, role: options.role, version: next.signed.version };
  });
}

// ---------------------------------------------------------------- rotation

export interface RotateOptions {
  role: RoleType;
  /**
   * Use this existing key file instead of generating a key (one key roles only). A root or
   * targets key file is decrypted with the offline passphrase; a snapshot or timestamp key file
   * is installed in keys/online/ as it is (its public part is all the root needs), encrypted with
   * whatever online passphrase its maker chose.
   */
  newKeyFile?: string;
}

/** A key a role rotates to: the key file to install, and its signer when this tool must sign with it. */
interface FreshKey {
  key: Key;
  signer?: Ed25519Signer;
  file: Uint8Array;
}

/** @throws KeyFileError for a key file that does not decrypt (root, targets) or is not a key file */
function freshKeys(s: Session, options: RotateOptions, count: number): FreshKey[] {
  const online = ONLINE_ROLES.has(options.role);
  if (options.newKeyFile) {
    const bytes = new Uint8Array(readFileSync(options.newKeyFile));
    if (online) return [{ key: readPublicKey(bytes), file: bytes }];
    const signer = decryptKeyFile(bytes, s.passphrase(), options.newKeyFile);
    return [{ key: signer.key, signer, file: encryptKeyFile(signer, s.passphrase()) }];
  }
  const passphrase = online ? s.onlinePassphrase() : s.passphrase();
  return Array.from({ length: count }, () => {
    const signer = Ed25519Signer.generate();
    return { key: signer.key, signer, file: encryptKeyFile(signer, passphrase) };
  });
}

/**
 * Replaces a top-level role's keys with new ones. For root, the new root is signed by the
 * threshold of the old keys and by all new keys; for the others, root gets a new version naming
 * the new keys (and targets is re-signed with them). Old key files move to keys/retired/.
 */
export async function rotateKey(ctx: RepoContext, options: RotateOptions): Promise<ChangeResult> {
  return withSession(ctx, async (s) => {
    const state = await currentState(s);
    const oldRoot = state.root;
    const role = oldRoot.signed.roles[options.role];
    if (!role) throw new UsageError(`rotate-key takes root, targets, snapshot or timestamp (delegated roles: use delegate with the new --key)`);
    const fresh = freshKeys(s, options, role.keyids.length);
    if (fresh.length < role.threshold) throw new UsageError(`${options.role} needs ${role.threshold} keys`);
    const oldRootSigners = s.ws.signers('root', oldRoot.signed.roles.root.keyids, oldRoot.signed.roles.root.threshold, s.passphrase());
    if (oldRootSigners.length < oldRoot.signed.roles.root.threshold) {
      throw new WorkspaceError(`${s.ws.offlineKeysDir} holds ${oldRootSigners.length} of the ${oldRoot.signed.roles.root.threshold} root key(s) needed`);
    }
    const next = copyRoot(oldRoot, s);
    for (const keyid of [...role.keyids]) next.signed.revokeKey(options.role, keyid);
    for (const { key } of fresh) next.signed.addKey(options.role, key);

    const written = fresh.map(({ key, file }) => {
      const path = s.ws.keyFileName(options.role, key);
      s.ws.writeSecret(path, file);
      return path;
    });
    try {
      if (options.role === 'root') for (const { signer } of fresh) next.sign(signer!);
      else for (const signer of oldRootSigners) next.sign(signer);
      if (options.role === 'root') for (const signer of oldRootSigners) next.sign(signer);
      const batch: { roots: Uint8Array[]; targets?: Uint8Array } = { roots: [next.toBytes()] };
      let targets: Metadata<Targets> | undefined;
      if (options.role === 'targets') {
        targets = copyTargets(state.targets, s, s.expiries.targets);
        for (const { signer } of fresh) targets.sign(signer!);
        batch.targets = targets.toBytes();
      }
      const result = await s.backend.publish(batch, s.now);
      const v = next.signed.version;
      recordWorkingCopy(s, { [`${v}.root.json`]: next, 'root.json': next, ...(targets && { 'targets.json': targets }) });
      retireKeys(s.ws, options.role, role.keyids);
      return { ...result, role: options.role, version: options.role === 'targets' ? targets!.signed.version : v };
    } catch (error) {
      for (const path of written) rmSync(path, { force: true });
      throw error;
    }
  });
}

function retireKeys(ws: Workspace, role: string, keyids: readonly string[]): void {
  const retired = join(ws.keysDirOf(role), 'retired');
  ws.ensureSecretDir(retired);
  for (const file of ws.keyFiles(role)) {
    if (keyids.includes(file.key.keyid)) renameSync(file.path, join(retired, basename(file.path)));
  }
}

// ---------------------------------------------------------------- status

export interface RepoStatus {
  source: string;
  versions: Record<string, number>;
  expires: Record<string, string>;
  keys: Record<string, { keyids: string[]; threshold: number; inKeysDir: number }>;
  delegations: Array<{ role: string; paths: string[]; hardwareIds?: string[]; keyids: string[]; threshold: number; terminating: boolean; version?: number }>;
  targets: Array<{ name: string; role: string; length: number; sha256: string; hardwareIds: unknown; version: unknown; releaseCounter: unknown }>;
  warnings: string[];
}

export async function status(ctx: RepoContext): Promise<RepoStatus> {
  return withSession(ctx, async (s) => {
    const state = await currentState(s);
    const root = state.root.signed;
    const published = await s.backend.versions();
    const versions: Record<string, number> = {
      root: root.version, targets: state.targets.signed.version, snapshot: published.snapshot!, timestamp: published.timestamp!,
    };
    const expires: Record<string, string> = { root: root.expires, targets: state.targets.signed.expires, ...(await s.backend.onlineExpiries()) };
    for (const [name, md] of state.delegated) {
      versions[name] = md.signed.version;
      expires[name] = md.signed.expires;
    }
    const keys: RepoStatus['keys'] = {};
    for (const r of ['root', 'targets', 'snapshot', 'timestamp'] as const) {
      const ids = root.roles[r].keyids;
      keys[r] = { keyids: ids, threshold: root.roles[r].threshold, inKeysDir: s.ws.keyFiles(r).filter((f) => ids.includes(f.key.keyid)).length };
    }
    const delegations = (state.targets.signed.delegations?.roles ?? []).map((r) => ({
      role: r.name, paths: r.paths ?? [], hardwareIds: r.hardwareIds, keyids: r.keyids, threshold: r.threshold, terminating: r.terminating,
      version: state.delegated.get(r.name)?.signed.version,
    }));
    const targets: RepoStatus['targets'] = [];
    for (const [role, md] of [['targets', state.targets] as const, ...state.delegated]) {
      for (const [name, info] of Object.entries(md.signed.targets)) {
        targets.push({ name, role, length: info.length, sha256: info.hashes.sha256 ?? '', hardwareIds: info.custom?.hardwareIds, version: info.custom?.version, releaseCounter: info.custom?.releaseCounter });
      }
    }
    const warnings = delegations.filter((d) => d.version === undefined).map((d) => `${d.role} is delegated but its supplier has not signed it yet`);
    return { source: s.backend.description, versions, expires, keys, delegations, targets, warnings };
  });
}
