/**
 * Publishing: verify a proposal against the committed state, then in ONE
 * SQLite transaction insert the new metadata files, a new snapshot and
 * timestamp signed with the online keys, and switch the current roles. The
 * state is read inside the transaction (BEGIN IMMEDIATE), so concurrent
 * publishers (the server, a local CLI, the expiry timer) serialise and each
 * builds on the last commit. Verification and signing are synchronous and
 * happen inside that transaction; a throw rolls everything back.
 *
 * Snapshot meta lists every delegated role ever published (TUF clients refuse
 * a snapshot that drops a role they have seen), with length and sha256.
 */
import {
  digestHex,
  expiresIn,
  Metadata,
  MetaFile,
  Snapshot,
  Timestamp,
  type Root,
  type Signer,
  type Targets,
} from '@upfleet/core';
import { OnlineKeyMissingError } from './errors.ts';
import type { IndexDb } from './index-db.ts';
import type { OnlineKeyring } from './online-keys.ts';
import { applyProposal, type Proposal, type RepoState } from './verify.ts';

export interface PublishBatch {
  /** New root versions, in order (each signed by the previous root's keys and its own). */
  roots?: Uint8Array[];
  targets?: Uint8Array;
  /** Delegated role name -> its new metadata. */
  delegated?: Record<string, Uint8Array>;
}

export interface PublishResult {
  /** Current version of every role after the publish. */
  versions: Record<string, number>;
  warnings: string[];
}

export interface PublisherOptions {
  db: IndexDb;
  keyring: OnlineKeyring;
  /** Seconds. */
  snapshotExpiry: number;
  timestampExpiry: number;
  /** Test hook (fault injection): block this long inside the transaction, just before COMMIT. */
  pauseBeforeCommitMs?: number;
  onPause?: () => void;
}

export class Publisher {
  constructor(private readonly options: PublisherOptions) {}

  /** The committed state, or undefined for an empty repository. */
  state(): RepoState | undefined {
    const { db } = this.options;
    const root = db.currentFile('root');
    const targets = db.currentFile('targets');
    if (!root || !targets) return undefined;
    const delegated = new Map<string, Metadata<Targets>>();
    for (const row of db.roles()) {
      if (['root', 'targets', 'snapshot', 'timestamp'].includes(row.name)) continue;
      delegated.set(row.name, Metadata.fromBytes(db.file(row.file)!.bytes, 'targets', row.file));
    }
    return {
      root: Metadata.fromBytes(root.bytes, 'root'),
      targets: Metadata.fromBytes(targets.bytes, 'targets'),
      delegated,
    };
  }

  versions(): Record<string, number> {
    return Object.fromEntries(this.options.db.roles().map((r) => [r.name, r.version]));
  }

  /**
   * Verifies and publishes atomically; on any error nothing changes.
   * @throws MalformedMetadataError, UnsignedMetadataError, BadVersionError, ExpiredMetadataError,
   *   DelegationViolationError, BadTargetError, BadNameError, MissingImageError,
   *   LengthOrHashMismatchError, OnlineKeyMissingError
   */
  publish(batch: PublishBatch, now: Date): PublishResult {
    const proposal: Proposal = {
      roots: (batch.roots ?? []).map((b, i) => Metadata.fromBytes(b, 'root', `roots[${i}]`)),
      targets: batch.targets && Metadata.fromBytes(batch.targets, 'targets'),
      delegated: new Map(Object.entries(batch.delegated ?? {}).map(([name, b]) => [name, Metadata.fromBytes(b, 'targets', name)])),
    };
    const { db } = this.options;
    return db.writeTransaction(() => {
      const current = this.state();
      const { state, warnings } = applyProposal(current, proposal, now, (sha256) => db.image(sha256));
      const snapshotSigners = this.onlineSigners(state.root.signed, 'snapshot');
      const timestampSigners = this.onlineSigners(state.root.signed, 'timestamp');
      for (const md of proposal.roots) this.insert('root', md.signed.version, `${md.signed.version}.root.json`, md.toBytes());
      const changed: Array<Metadata<Targets>> = [];
      if (proposal.targets) {
        this.insert('targets', proposal.targets.signed.version, `${proposal.targets.signed.version}.targets.json`, proposal.targets.toBytes());
        changed.push(proposal.targets);
      }
      for (const [name, md] of proposal.delegated) {
        this.insert(name, md.signed.version, `${md.signed.version}.${name}.json`, md.toBytes());
        changed.push(md);
      }
      for (const md of changed) {
        // applyProposal checked that each of these has an uploaded image.
        for (const [name, info] of Object.entries(md.signed.targets)) db.publishTarget(name, db.image(info.hashes.sha256!.toLowerCase())!);
      }
      this.writeSnapshotAndTimestamp(now, snapshotSigners, timestampSigners);
      this.pauseIfAsked();
      return { versions: this.versions(), warnings };
    });
  }

  /**
   * Re-signs timestamp (and snapshot) when less than half of their validity is left.
   * Returns the new versions, or undefined when nothing needed refreshing.
   */
  refreshExpiring(now: Date): PublishResult | undefined {
    const { db, snapshotExpiry, timestampExpiry } = this.options;
    return db.writeTransaction(() => {
      const state = this.state();
      const ts = db.currentFile('timestamp');
      const snap = db.currentFile('snapshot');
      if (!state || !ts || !snap) return undefined;
      const timestamp = Metadata.fromBytes(ts.bytes, 'timestamp');
      const snapshot = Metadata.fromBytes(snap.bytes, 'snapshot');
      const soon = (expires: string, period: number) => Date.parse(expires) - now.getTime() < (period * 1000) / 2;
      const root = state.root.signed;
      if (soon(snapshot.signed.expires, snapshotExpiry)) {
        this.writeSnapshotAndTimestamp(now, this.onlineSigners(root, 'snapshot'), this.onlineSigners(root, 'timestamp'));
      } else if (soon(timestamp.signed.expires, timestampExpiry)) {
        this.writeTimestamp(now, snap.name, snap.bytes, this.onlineSigners(root, 'timestamp'));
      } else {
        return undefined;
      }
      return { versions: this.versions(), warnings: [] };
    });
  }

  private onlineSigners(root: Root, role: 'snapshot' | 'timestamp'): Signer[] {
    const { keyids, threshold } = root.roles[role];
    const signers = this.options.keyring.signers(keyids);
    if (signers.length < threshold) throw new OnlineKeyMissingError(role, threshold, signers.length);
    return signers;
  }

  private insert(role: string, version: number, file: string, bytes: Uint8Array): void {
    this.options.db.insertFile(file, bytes, digestHex('sha256', bytes));
    this.options.db.setRole(role, version, file);
  }

  private writeSnapshotAndTimestamp(now: Date, snapshotSigners: Signer[], timestampSigners: Signer[]): void {
    const { db, snapshotExpiry } = this.options;
    const meta: Record<string, MetaFile> = {};
    for (const row of db.roles()) {
      if (['root', 'snapshot', 'timestamp'].includes(row.name)) continue;
      const file = db.file(row.file)!;
      meta[`${row.name}.json`] = new MetaFile(row.version, file.bytes.byteLength, { sha256: file.sha256 });
    }
    const version = (db.roles().find((r) => r.name === 'snapshot')?.version ?? 0) + 1;
    const snapshot = new Metadata(new Snapshot(version, expiresIn(now, snapshotExpiry), meta));
    for (const s of snapshotSigners) snapshot.sign(s);
    const bytes = snapshot.toBytes();
    const name = `${version}.snapshot.json`;
    this.insert('snapshot', version, name, bytes);
    this.writeTimestamp(now, name, bytes, timestampSigners);
  }

  private writeTimestamp(now: Date, snapshotFile: string, snapshotBytes: Uint8Array, signers: Signer[]): void {
    const { db, timestampExpiry } = this.options;
    const snapshotVersion = Number(snapshotFile.split('.')[0]);
    const version = (db.roles().find((r) => r.name === 'timestamp')?.version ?? 0) + 1;
    const timestamp = new Metadata(
      new Timestamp(version, expiresIn(now, timestampExpiry), new MetaFile(snapshotVersion, snapshotBytes.byteLength, { sha256: digestHex('sha256', snapshotBytes) })),
    );
    for (const s of signers) timestamp.sign(s);
    this.insert('timestamp', version, `${version}.timestamp.json`, timestamp.toBytes());
  }

  private pauseIfAsked(): void {
    const ms = this.options.pauseBeforeCommitMs;
    if (!ms) return;
    this.options.onPause?.();
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  }
}
