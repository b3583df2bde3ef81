/**
 * The simulated ECU's non-volatile memory: a state file and two firmware slot
 * files (A/B) in one directory.
 *
 * Invariants:
 * - state.json is replaced atomically (temp file, fsync, rename): a simulated
 *   power cut leaves the old or the new state, never a mix.
 * - The slot being written is always the inactive one; the active slot is only
 *   switched by activation, after the image in the inactive slot was verified.
 * - The bytes already in the inactive slot file are the resume offset of the
 *   pending transfer (chunks are written in order and acked after the write).
 * - metadata/director/ and metadata/image/ hold the ECU's trusted metadata, one
 *   file per role written atomically (Uptane 5.4.2.6: all the metadata its own
 *   verification needs). They start with the roots pinned at manufacture; the
 *   verification engine alone writes them afterwards.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { metadataFileName, type VerifiedTarget } from '@upfleet/core';
import type { WireInstalledImage } from '@upfleet/core/link/index.ts';
import { DirectoryMetadataStore } from '@upfleet/agent/tuf/directory-store.ts';

export type Slot = 'a' | 'b';

export interface EcuState {
  activeSlot: Slot;
  slots: Record<Slot, WireInstalledImage | null>;
  releaseCounter: number;
  /** The target the last verified metadata names for this ECU. */
  verified: VerifiedTarget | null;
  /** The transfer into the inactive slot: which target, and whether it passed verification. */
  pending: { target: VerifiedTarget; verified: boolean } | null;
  attacksDetected: string;
  latestVerifiedTime: string;
}

/** The roots an ECU trusts at manufacture (image: full verification only). */
export interface PinnedRoots {
  directorRoot: Uint8Array;
  imageRoot?: Uint8Array;
}

export class EcuStore {
  readonly statePath: string;
  state: EcuState;
  /** The trusted metadata of each repository this ECU verifies. */
  readonly metadata: { director: DirectoryMetadataStore; image?: DirectoryMetadataStore };

  /** Opens the store in `dir`, pinning `roots` on first use. */
  constructor(readonly dir: string, roots: PinnedRoots) {
    this.metadata = {
      director: pinned(join(dir, 'metadata', 'director'), roots.directorRoot),
      ...(roots.imageRoot && { image: pinned(join(dir, 'metadata', 'image'), roots.imageRoot) }),
    };
    this.statePath = join(dir, 'state.json');
    if (existsSync(this.statePath)) {
      this.state = JSON.parse(readFileSync(this.statePath, 'utf8')) as EcuState;
    } else {
      this.state = {
        activeSlot: 'a',
        slots: { a: null, b: null },
        releaseCounter: 0,
        verified: null,
        pending: null,
        attacksDetected: '',
        latestVerifiedTime: new Date(0).toISOString(),
      };
      this.save();
    }
  }

  save(): void {
    const tmp = `${this.statePath}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, JSON.stringify(this.state, null, 1));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.statePath);
  }

  get inactiveSlot(): Slot {
    return this.state.activeSlot === 'a' ? 'b' : 'a';
  }

  slotPath(slot: Slot): string {
    return join(this.dir, `slot-${slot}.bin`);
  }

  /** Bytes held in the inactive slot. */
  inactiveLength(): number {
    const p = this.slotPath(this.inactiveSlot);
    return existsSync(p) ? statSync(p).size : 0;
  }

  /** Cuts the inactive slot to `length` bytes (0: erased). */
  truncateInactive(length: number): void {
    const p = this.slotPath(this.inactiveSlot);
    if (!existsSync(p)) writeFileSync(p, new Uint8Array(0));
    truncateSync(p, length);
  }

  readInactive(): Uint8Array {
    return new Uint8Array(readFileSync(this.slotPath(this.inactiveSlot)));
  }

  readActive(): Uint8Array | undefined {
    const p = this.slotPath(this.state.activeSlot);
    return existsSync(p) ? new Uint8Array(readFileSync(p)) : undefined;
  }
}

/** A metadata directory holding at least `root` as its trusted root. */
function pinned(dir: string, root: Uint8Array): DirectoryMetadataStore {
  mkdirSync(dir, { recursive: true });
  const rootPath = join(dir, metadataFileName('root'));
  if (!existsSync(rootPath)) {
    const tmp = `${rootPath}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, root);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, rootPath);
  }
  return new DirectoryMetadataStore(dir);
}
