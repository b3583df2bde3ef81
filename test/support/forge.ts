/**
 * What an attacker who holds some keys can sign, for the attack suite. Every
 * forgery here is made with real keys of the running stack (or fresh keys the
 * repositories do not list), and served to the agent by an AttackProxy: the
 * servers themselves keep publishing genuine metadata.
 *
 * - Image repository online keys (snapshot, timestamp): a compromised server.
 * - A supplier's delegated key, root keys below threshold: stolen offline keys.
 * - Director online keys: a compromised director (it signs whatever it likes
 *   through its own DeviceRepository).
 */
import { readFileSync } from 'node:fs';
import {
  decryptKeyFile, expiresIn, Metadata, MetaFile, Snapshot, TargetFile, Timestamp, digestHex,
  type Root, type Signer, type Targets,
} from '@upfleet/core';
import { ONLINE_ROLES, onlinePassphrase, Workspace } from '@upfleet/image-repo';
import { PASSPHRASE, type Stack } from './stack.ts';

/** Files to serve in place of the image repository's, by request path. */
export type Forged = Record<string, Uint8Array>;

export async function fetchImageMetadata(stack: Stack, name: string): Promise<Uint8Array> {
  const res = await fetch(`${stack.imageRepo.url}/metadata/${name}`);
  if (!res.ok) throw new Error(`image repo ${name}: ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** The published snapshot and timestamp of the image repository now. */
export async function currentImageState(stack: Stack): Promise<{ timestamp: Metadata<Timestamp>; snapshot: Metadata<Snapshot>; snapshotBytes: Uint8Array }> {
  const timestamp = Metadata.fromBytes(await fetchImageMetadata(stack, 'timestamp.json'), 'timestamp');
  const snapshotBytes = await fetchImageMetadata(stack, `${timestamp.signed.snapshotMeta.version}.snapshot.json`);
  return { timestamp, snapshot: Metadata.fromBytes(snapshotBytes, 'snapshot'), snapshotBytes };
}

/**
 * A new snapshot and timestamp (signed with the repository's online keys) that
 * list `roles` (role name -> the version to claim and the bytes to serve under it).
 */
export async function forgeSnapshot(stack: Stack, roles: Record<string, { version: number; bytes: Uint8Array }>): Promise<Forged> {
  const { timestamp, snapshot } = await currentImageState(stack);
  const now = stack.clock.now();
  const out: Forged = {};
  const next = Metadata.fromBytes(snapshot.toBytes(), 'snapshot');
  next.signatures.clear();
  next.signed.version += 1;
  next.signed.expires = expiresIn(now, 7 * 86400);
  for (const [role, f] of Object.entries(roles)) {
    next.signed.meta[`${role}.json`] = new MetaFile(f.version, f.bytes.byteLength, { sha256: digestHex('sha256', f.bytes) });
    out[`/metadata/${f.version}.${role}.json`] = f.bytes;
  }
  next.sign(stack.repo.signers.snapshot);
  const snapshotBytes = next.toBytes();
  out[`/metadata/${next.signed.version}.snapshot.json`] = snapshotBytes;
  const ts = new Metadata(new Timestamp(timestamp.signed.version + 1, expiresIn(now, 86400),
    new MetaFile(next.signed.version, snapshotBytes.byteLength, { sha256: digestHex('sha256', snapshotBytes) })));
  ts.sign(stack.repo.signers.timestamp);
  out['/metadata/timestamp.json'] = ts.toBytes();
  return out;
}

/** The next version of a delegated role with `targets` added, signed by `signers` (a supplier's key). */
export async function forgeDelegated(stack: Stack, role: string, signers: Signer[], targets: Record<string, TargetFile>): Promise<Forged> {
  const { snapshot } = await currentImageState(stack);
  const current = snapshot.signed.meta[`${role}.json`]!.version;
  const md = Metadata.fromBytes(await fetchImageMetadata(stack, `${current}.${role}.json`), 'targets') as Metadata<Targets>;
  md.signatures.clear();
  md.signed.version += 1;
  Object.assign(md.signed.targets, targets);
  for (const s of signers) md.sign(s);
  return forgeSnapshot(stack, { [role]: { version: md.signed.version, bytes: md.toBytes() } });
}

/** Decrypts key files of the image repository's `role` (root: as many as `count`); online ones under the online passphrase. */
export function stealImageRepoKeys(stack: Stack, role: string, count = 1): Signer[] {
  const ws = new Workspace(stack.repoDir);
  const passphrase = ONLINE_ROLES.has(role) ? onlinePassphrase(ws)() : PASSPHRASE;
  return ws.keyFiles(role)
    .slice(0, count)
    .map((f) => decryptKeyFile(new Uint8Array(readFileSync(f.path)), passphrase));
}

/** A supplier key file made by Stack.addSupplier, decrypted. */
export function stealSupplierKey(path: string): Signer {
  return decryptKeyFile(new Uint8Array(readFileSync(path)), PASSPHRASE);
}

/** The next root version after the published one, changed by `mutate`, signed by `signers`. */
export async function forgeRoot(stack: Stack, signers: Signer[], mutate: (root: Root) => void = () => {}, skip = 0): Promise<Metadata<Root>> {
  const latest = Metadata.fromBytes(await fetchImageMetadata(stack, 'root.json'), 'root');
  const next = Metadata.fromBytes(latest.toBytes(), 'root');
  next.signatures.clear();
  next.signed.version += 1 + skip;
  mutate(next.signed);
  for (const s of signers) next.sign(s);
  return next;
}

/**
 * A compromised director: signs new targets for `deviceId` with its real online
 * keys, bypassing every assignment check.
 */
export async function compromisedDirectorPublish(
  stack: Stack, deviceId: string,
  targets: Record<string, { ecuSerial: string; hardwareId: string; length: number; hashes: Record<string, string>; releaseCounter?: number }>,
): Promise<unknown> {
  const files: Record<string, TargetFile> = {};
  for (const [name, t] of Object.entries(targets)) {
    files[name] = new TargetFile(t.length, { ...t.hashes }, { ecuIdentifiers: { [t.ecuSerial]: { hardwareId: t.hardwareId } }, releaseCounter: t.releaseCounter ?? 0 });
  }
  const services = stack.director.services;
  return services.store.transaction(() => services.repo.publish(deviceId, files));
}
