/**
 * The primary ECU as a Secondary: the update loop treats the gateway itself
 * like any other ECU. Images go through the configured install handler with
 * A/B semantics.
 *
 * The handler is run as `sh -c '<installCommand> "$1"' upfleet <image path>`
 * with the environment:
 *   UPFLEET_PHASE      install | activate | health | commit | rollback
 *   UPFLEET_SLOT       the slot the phase is about (the inactive one, "a" or "b")
 *   UPFLEET_IMAGE      path of the verified image staged for that slot
 *   UPFLEET_ECU_SERIAL, UPFLEET_TARGET_NAME
 * Exit status 0 means success. `activate` may reboot the machine: the agent
 * resumes in its `activating` state and runs `health` after the restart.
 * Every phase must be idempotent (it may run again after a power loss).
 *
 * A reboot from `activate` (`systemctl reboot`) stops the handler with SIGTERM,
 * often before the agent itself gets its SIGTERM. `activating` is persisted
 * (with this boot's ID) before the phase runs, and a handler that SIGTERM
 * ended is a restart under way, not a failure: `activate` then waits for the
 * machine to go down (`rebootRequested` resolves) and fails only when it does
 * not within `timeoutSeconds`. After a start in the same boot (the agent
 * restarted, the machine did not), `activate` runs again.
 *
 * Invariants:
 * - The slot state (`<dir>/slots.json`) is replaced atomically; `installed`
 *   changes only after `health` and `commit` succeeded.
 * - The staged image is checked (length, every hash) while it is copied in;
 *   the handler never sees unverified bytes. A copy resumes from the bytes
 *   already staged, re-hashing them first.
 * - Version reports are signed with the primary key and carry the caller's nonce.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { InstalledImage, Signer, SignedEcuReport } from '@upfleet/core';
import { InstallError } from '../errors.ts';
import { JsonFile } from '../atomic-file.ts';
import type { ImageToInstall, MetadataBundle, Progress, Secondary, SecondaryInfo } from './secondary.ts';
import { CommandSignalledError, installedImage, primaryInfo, primaryReport, runShell, stageImage } from './image-file.ts';
import { MachineRestart } from './machine-restart.ts';

type Slot = 'a' | 'b';

interface SlotState {
  active: Slot;
  installed: InstalledImage | null;
  releaseCounter: number;
  /** An image staged for the inactive slot, and how far it got. */
  pending?: {
    image: InstalledImage;
    releaseCounter: number;
    phase: 'staging' | 'installed' | 'activating';
    /** The boot in which `activate` was run last. */
    bootId?: string;
  };
  /** What the last refusal or failure was, for the next report (empty when none). */
  attacksDetected: string;
  latestVerifiedTime: string;
}

export interface LocalInstallOptions {
  ecuSerial: string;
  hardwareId: string;
  installCommand: string;
  timeoutSeconds: number;
  /** The primary key: it signs this ECU's reports. */
  signer: Signer;
  /** Where slot state and the staged image live. */
  dir: string;
  /** This boot's ID (/proc/sys/kernel/random/boot_id; agent.ts bootIdReader). */
  bootId: () => string;
  now?: () => Date;
}

export class LocalInstallSecondary implements Secondary {
  readonly ecuSerial: string;
  readonly #o: LocalInstallOptions;
  readonly #state: JsonFile<SlotState>;
  readonly #staged: string;
  readonly #restarting: MachineRestart;

  constructor(options: LocalInstallOptions) {
    this.#o = options;
    this.ecuSerial = options.ecuSerial;
    mkdirSync(options.dir, { recursive: true });
    this.#state = new JsonFile<SlotState>(join(options.dir, 'slots.json'), () => ({ active: 'a', installed: null, releaseCounter: 0, attacksDetected: '', latestVerifiedTime: '' }));
    this.#staged = join(options.dir, 'staged.image');
    this.#restarting = new MachineRestart(options.ecuSerial);
  }

  /** Resolves once `activate` saw the machine going down and waits for it. */
  get rebootRequested(): Promise<void> {
    return this.#restarting.requested;
  }

  #now(): Date {
    return this.#o.now?.() ?? new Date();
  }

  /** The slot state as stored (for `status`). */
  slots(): Readonly<SlotState> {
    return this.#state.read();
  }

  async info(): Promise<SecondaryInfo> {
    const s = this.#state.read();
    return primaryInfo({ ecuSerial: this.ecuSerial, hardwareId: this.#o.hardwareId, signer: this.#o.signer }, s, s.installed);
  }

  async versionReport(nonce: string): Promise<SignedEcuReport> {
    const s = this.#state.read();
    const ecu = { ecuSerial: this.ecuSerial, hardwareId: this.#o.hardwareId, signer: this.#o.signer, now: this.#now() };
    return primaryReport(ecu, s, s.installed, nonce);
  }

  /**
   * The primary verified both repositories itself and hands over its verified plan
   * (release counter included) with the image: nothing here reads the bundle.
   */
  async putMetadata(_bundle: MetadataBundle): Promise<void> {
    const s = this.#state.read();
    this.#state.write({ ...s, latestVerifiedTime: this.#now().toISOString() });
  }

  /** Stages (verified copy) then runs the `install` phase for the inactive slot. @throws LengthOrHashMismatchError, InstallError */
  async install(image: ImageToInstall, onProgress?: (p: Progress) => void): Promise<void> {
    let s = this.#state.read();
    const target = installedImage(image);
    const same = s.pending && JSON.stringify(s.pending.image) === JSON.stringify(target);
    if (!same) {
      rmSync(this.#staged, { force: true });
      s = { ...s, pending: { image: target, releaseCounter: image.releaseCounter, phase: 'staging' } };
      this.#state.write(s);
    }
    if (s.pending!.phase === 'staging') {
      await stageImage(image, this.#staged, this.ecuSerial, onProgress);
      await this.#run('install', inactive(s.active), image.name);
      s = { ...s, pending: { ...s.pending!, phase: 'installed' } };
      this.#state.write(s);
    }
    onProgress?.({ ecuSerial: this.ecuSerial, phase: 'flash', done: image.length, total: image.length });
  }

  /**
   * activate -> health -> commit; a failed health check rolls back. Does not
   * settle while the machine goes down. @throws InstallError
   */
  async activate(): Promise<void> {
    let s = this.#state.read();
    if (!s.pending) return; // already committed (activation redone after power loss)
    if (s.pending.phase === 'staging') throw new InstallError(this.ecuSerial, 'activate', 'no installed image to activate');
    const slot = inactive(s.active);
    const name = s.pending.image.filename;
    const bootId = this.#o.bootId();
    if (s.pending.phase === 'installed' || s.pending.bootId === bootId) {
      s = { ...s, pending: { ...s.pending, phase: 'activating', bootId } };
      this.#state.write(s);
      try {
        await this.#run('activate', slot, name);
      } catch (e) {
        if (!(e instanceof CommandSignalledError && e.signal === 'SIGTERM')) throw e;
        return this.#restarting.wait('the activate handler ended by SIGTERM', this.#o.timeoutSeconds);
      }
    }
    try {
      await this.#run('health', slot, name);
    } catch (error) {
      await this.#run('rollback', slot, name).catch(() => undefined);
      this.#state.write({ ...s, pending: undefined, attacksDetected: '' });
      rmSync(this.#staged, { force: true });
      throw error;
    }
    await this.#run('commit', slot, name);
    this.#state.write({ active: slot, installed: s.pending!.image, releaseCounter: s.pending!.releaseCounter, attacksDetected: '', latestVerifiedTime: s.latestVerifiedTime });
    rmSync(this.#staged, { force: true });
  }

  /** Drops a staged or installed-but-not-activated image; rolls back an activation in progress. */
  async abort(): Promise<void> {
    const s = this.#state.read();
    if (!s.pending) return;
    if (s.pending.phase !== 'staging') await this.#run('rollback', inactive(s.active), s.pending.image.filename);
    this.#state.write({ ...s, pending: undefined });
    rmSync(this.#staged, { force: true });
  }

  async close(): Promise<void> {
    this.#restarting.close();
  }

  #run(phase: string, slot: Slot, targetName: string): Promise<void> {
    const env = {
      ...process.env,
      UPFLEET_PHASE: phase,
      UPFLEET_SLOT: slot,
      UPFLEET_IMAGE: this.#staged,
      UPFLEET_ECU_SERIAL: this.ecuSerial,
      UPFLEET_TARGET_NAME: targetName,
    };
    return runShell(this.#o.installCommand, [this.#staged], { ecuSerial: this.ecuSerial, phase, timeoutSeconds: this.#o.timeoutSeconds, env, label: 'handler' }).then(() => undefined);
  }
}

function inactive(slot: Slot): Slot {
  return slot === 'a' ? 'b' : 'a';
}
