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
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { EcuTrust, VerifiedTarget, WireInstalledImage } from '@upfleet/core/link/index.ts';

export type Slot = 'a' | 'b';

export interface EcuState {
  activeSlot: Slot;
  slots: Record<Slot, WireInstalledImage | null>;
  releaseCounter: number;
  trust: { directorRoot: string; imageRoot?: string; directorTargetsVersion: number };
  /** The target the last verified metadata names for this ECU. */
  verified: VerifiedTarget | null;
  /** The transfer into the inactive slot: which target, and whether it passed verification. */
  pending: { target: VerifiedTarget; verified: boolean } | null;
  attacksDetected: string;
  latestVerifiedTime: string;
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

export class EcuStore {
  readonly statePath: string;
  state: EcuState;

  /** Opens the store in `dir`, creating its state from `initialTrust` on first use. */
  constructor(readonly dir: string, initialTrust: EcuTrust) {
    this.statePath = join(dir, 'state.json');
    if (existsSync(this.statePath)) {
      this.state = JSON.parse(readFileSync(this.statePath, 'utf8')) as EcuState;
    } else {
      this.state = {
        activeSlot: 'a',
        slots: { a: null, b: null },
        releaseCounter: 0,
        trust: {
          directorRoot: b64(initialTrust.directorRoot),
          ...(initialTrust.imageRoot && { imageRoot: b64(initialTrust.imageRoot) }),
          directorTargetsVersion: initialTrust.directorTargetsVersion,
        },
        verified: null,
        pending: null,
        attacksDetected: '',
        latestVerifiedTime: new Date(0).toISOString(),
      };
      this.save();
    }
  }

  get trust(): EcuTrust {
    const t = this.state.trust;
    return { directorRoot: unb64(t.directorRoot), ...(t.imageRoot && { imageRoot: unb64(t.imageRoot) }), directorTargetsVersion: t.directorTargetsVersion };
  }

  set trust(t: EcuTrust) {
    this.state.trust = {
      directorRoot: b64(t.directorRoot), ...(t.imageRoot && { imageRoot: b64(t.imageRoot) }), directorTargetsVersion: t.directorTargetsVersion,
    };
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
