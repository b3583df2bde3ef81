/**
 * The primary ECU updated by RAUC (A/B slots): the published image is a RAUC
 * bundle, verified against both repositories like any image, then
 * `rauc install`ed into the other slot; the machine restarts into it, checks
 * its health, and marks the slot good, or goes back to the old slot.
 *
 * The steps, each persisted in `<dir>/rauc.json` (atomically) before the
 * outside effect it prepares:
 *   install   phase `installing` -> bundle checked -> `rauc install` (RAUC writes
 *             the other slot and makes it the bootloader's primary) -> phase
 *             `installed` with the booted slot (`bootedBefore`) and the new
 *             primary (`target`)
 *   activate  phase `rebooting` with this boot's ID -> reboot command -> (the
 *             machine restarts; the agent resumes its `activating` state) ->
 *             booted slot = target: health check -> `rauc status mark-good` ->
 *             the target slot's record becomes the image, pending cleared;
 *             booted slot = bootedBefore: the bootloader fell back on its own
 *             (BootFallbackError)
 *   start     (every agent start, `confirmBoot`) the booted slot is confirmed to the
 *             bootloader (`rauc status mark-good`) unless it is on trial: a
 *             bootloader that counts tries (GRUB's <slot>_TRY, U-Boot's
 *             counters) falls back from a slot nobody confirms at each boot
 *   abort     (the runner's rollback, also after a failed health check)
 *             running the new slot: phase `rollingBack`, mark it bad, make the
 *             old one active, restart; running the old slot: make it active
 *             again if RAUC's install had made the other one primary, clear.
 *
 * Invariants:
 * - The reported image is the record of the slot that booted, so a fallback
 *   (asked for or not) is reported as the old image, and a report never names
 *   an image no slot runs. Records of the other slots are dropped when an
 *   install starts (RAUC is about to overwrite them).
 * - A restart is recognised by the boot ID: the same ID after a "reboot" means
 *   the machine has not restarted yet (the reboot command is run again).
 * - While the machine goes down, `activate`/`abort` never settle: the cycle
 *   must not go on in the old boot. `rebootRequested` resolves then, so the
 *   agent can stop without waiting for them.
 * - A slot on trial (an install is pending and the slot is not the one that ran
 *   when it began) is marked good only after its health check passed, by
 *   `activate`; the state is committed after the mark, so a power loss between
 *   boot and mark leaves the next start to check again (same slot) or to see
 *   the bootloader's fallback: never a success without the mark.
 * - The bundle is handed to rauc only after its length and hashes were checked
 *   again just before (image-file.ts); RAUC also checks its own signature.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { InstalledImage, Signer, SignedEcuReport } from '@upfleet/core';
import type { RaucInstaller } from '../config.ts';
import { BootFallbackError, HealthCheckError, InstallError } from '../errors.ts';
import { JsonFile } from '../atomic-file.ts';
import { installedImage, primaryInfo, primaryReport, runShell, stageImage, verifyImageFile } from './image-file.ts';
import { MachineRestart } from './machine-restart.ts';
import { RaucClient, type RaucStatus } from './rauc-client.ts';
import type { ImageToInstall, MetadataBundle, Progress, Secondary, SecondaryInfo } from './secondary.ts';

interface SlotRecord {
  image: InstalledImage;
  releaseCounter: number;
}

interface PendingActivation {
  image: InstalledImage;
  releaseCounter: number;
  phase: 'installing' | 'installed' | 'rebooting' | 'rollingBack';
  /** The slot that ran when rauc installed (the one to fall back to). */
  bootedBefore?: string;
  /** The slot rauc installed into (the bootloader's primary after the install). */
  target?: string;
  /** The boot in which the last restart was asked for. */
  bootId?: string;
}

export interface RaucState {
  /** What the agent installed into each slot, by RAUC slot name. */
  slots: Record<string, SlotRecord>;
  /** The highest release counter committed (rollback protection outlives a fallback). */
  releaseCounter: number;
  /** The slot last marked good: a start in another slot without an activation is a fallback nobody asked for. */
  current?: string;
  pending?: PendingActivation;
  attacksDetected: string;
  latestVerifiedTime: string;
}

export interface RaucPrimaryOptions {
  ecuSerial: string;
  hardwareId: string;
  installer: RaucInstaller;
  /** The primary key: it signs this ECU's reports. */
  signer: Signer;
  /** Where the state and (when no cached file is given) the staged bundle live. */
  dir: string;
  /** The health check without a configured command: resolves once the director answers. */
  directorReachable: () => Promise<void>;
  /** This boot's ID (/proc/sys/kernel/random/boot_id). */
  bootId: () => string;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  env?: NodeJS.ProcessEnv;
  now?: () => Date;
}

/** How often a busy RAUC service is asked again. */
const IDLE_POLL_MS = 500;

/** How often the default health check asks the director while it has not answered. */
const HEALTH_RETRY_MS = 5000;

export class RaucPrimary implements Secondary {
  readonly ecuSerial: string;
  readonly #o: RaucPrimaryOptions;
  readonly #rauc: RaucClient;
  readonly #state: JsonFile<RaucState>;
  readonly #staged: string;
  /** The booted slot does not change while this process lives: asked once. */
  #booted: Promise<string> | undefined;
  readonly #restarting: MachineRestart;

  constructor(options: RaucPrimaryOptions) {
    this.#o = options;
    this.ecuSerial = options.ecuSerial;
    this.#rauc = new RaucClient({ ecuSerial: options.ecuSerial, timeoutSeconds: options.installer.timeoutSeconds, ...(options.env && { env: options.env }) });
    mkdirSync(options.dir, { recursive: true });
    this.#state = new JsonFile<RaucState>(join(options.dir, 'rauc.json'), () => ({ slots: {}, releaseCounter: 0, attacksDetected: '', latestVerifiedTime: '' }));
    this.#staged = join(options.dir, 'staged.raucb');
    this.#restarting = new MachineRestart(options.ecuSerial);
  }

  /** Resolves once a restart was asked for and the installer waits for the machine to go down. */
  get rebootRequested(): Promise<void> {
    return this.#restarting.requested;
  }

  #now(): Date {
    return this.#o.now?.() ?? new Date();
  }

  /** The state as stored (for `status` and tests). */
  state(): Readonly<RaucState> {
    return this.#state.read();
  }

  #bootedSlot(): Promise<string> {
    this.#booted ??= this.#rauc.status().then(
      (status) => {
        const s = this.#state.read();
        if (!s.pending && s.current !== undefined && status.booted !== s.current) {
          this.#o.log?.('the bootloader started another slot than the one last marked good; reporting what runs there', { booted: status.booted, markedGood: s.current, image: s.slots[status.booted]?.image.filename ?? null });
        }
        return status.booted;
      },
      (e: unknown) => {
        this.#booted = undefined;
        throw e;
      },
    );
    return this.#booted;
  }

  async #installed(s: RaucState): Promise<SlotRecord | undefined> {
    return s.slots[await this.#bootedSlot()];
  }

  async info(): Promise<SecondaryInfo> {
    const s = this.#state.read();
    return primaryInfo({ ecuSerial: this.ecuSerial, hardwareId: this.#o.hardwareId, signer: this.#o.signer }, s, (await this.#installed(s))?.image);
  }

  async versionReport(nonce: string): Promise<SignedEcuReport> {
    const s = this.#state.read();
    const ecu = { ecuSerial: this.ecuSerial, hardwareId: this.#o.hardwareId, signer: this.#o.signer, now: this.#now() };
    return primaryReport(ecu, s, (await this.#installed(s))?.image, nonce);
  }

  /**
   * Run at every agent start: confirms the booted slot to the bootloader unless
   * it is on trial (then `activate` checks its health first, or `abort` marks
   * it bad). Returns what it did. @throws InstallError when RAUC cannot be asked
   */
  async confirmBoot(): Promise<'confirmed' | 'onTrial'> {
    const booted = await this.#bootedSlot();
    const p = this.#state.read().pending;
    if (p && p.bootedBefore !== undefined && booted !== p.bootedBefore) {
      this.#o.log?.('the booted slot is on trial: confirmed only after its health check', { slot: booted, target: p.image.filename });
      return 'onTrial';
    }
    await this.#rauc.mark('good', 'booted');
    this.#o.log?.('booted slot confirmed to the bootloader', { slot: booted });
    return 'confirmed';
  }

  /** The primary verified both repositories itself: nothing here reads the bundle. */
  async putMetadata(_bundle: MetadataBundle): Promise<void> {
    this.#state.write({ ...this.#state.read(), latestVerifiedTime: this.#now().toISOString() });
  }

  /** Checks the bundle and `rauc install`s it into the other slot. @throws LengthOrHashMismatchError, InstallError */
  async install(image: ImageToInstall, onProgress?: (p: Progress) => void): Promise<void> {
    let s = this.#state.read();
    const target = installedImage(image);
    const same = s.pending && JSON.stringify(s.pending.image) === JSON.stringify(target);
    if (!same || s.pending!.phase === 'installing') {
      const booted = await this.#bootedSlot();
      // RAUC is about to overwrite another slot: what it held is gone.
      const slots = s.slots[booted] ? { [booted]: s.slots[booted] } : {};
      s = { ...s, slots, pending: { image: target, releaseCounter: image.releaseCounter, phase: 'installing', bootedBefore: booted } };
      this.#state.write(s);
      const bundle = await this.#bundleFile(image, onProgress);
      onProgress?.({ ecuSerial: this.ecuSerial, phase: 'flash', done: 0, total: image.length });
      await this.#untilIdle();
      await this.#rauc.install(bundle);
      const after = await this.#rauc.status();
      if (after.bootPrimary === null || after.bootPrimary === booted) {
        throw new InstallError(this.ecuSerial, 'install', `rauc installed ${image.name} but the bootloader's primary slot is ${after.bootPrimary ?? 'unknown'}, not another slot`);
      }
      s = { ...s, pending: { ...s.pending!, phase: 'installed', target: after.bootPrimary } };
      this.#state.write(s);
      rmSync(this.#staged, { force: true });
      this.#o.log?.('rauc installed the bundle', { target: image.name, slot: after.bootPrimary, booted });
    }
    onProgress?.({ ecuSerial: this.ecuSerial, phase: 'flash', done: image.length, total: image.length });
  }

  /** The cached image, checked in place; else a verified copy. */
  async #bundleFile(image: ImageToInstall, onProgress?: (p: Progress) => void): Promise<string> {
    if (image.localPath !== undefined && existsSync(image.localPath)) {
      await verifyImageFile(image, image.localPath);
      return image.localPath;
    }
    await stageImage(image, this.#staged, this.ecuSerial, onProgress);
    return this.#staged;
  }

  /**
   * Restarts into the installed slot; after the restart: health check, mark
   * good, commit. Does not settle while the machine goes down.
   * @throws HealthCheckError, BootFallbackError, InstallError
   */
  async activate(): Promise<void> {
    const s = this.#state.read();
    const p = s.pending;
    if (!p) return; // committed already (activation redone after a power loss)
    if (p.phase === 'installing' || p.target === undefined || p.bootedBefore === undefined) {
      throw new InstallError(this.ecuSerial, 'activate', 'no installed bundle to activate');
    }
    if (p.phase === 'installed' || p.bootId === this.#o.bootId()) {
      this.#state.write({ ...s, pending: { ...p, phase: 'rebooting', bootId: this.#o.bootId() } });
      return this.#restart(`into slot ${p.target}`);
    }
    const status = await this.#rauc.status();
    if (status.booted === p.bootedBefore) throw new BootFallbackError(this.ecuSerial, p.target, status.booted);
    if (status.booted !== p.target) throw new InstallError(this.ecuSerial, 'activate', `booted slot ${status.booted}, neither ${p.target} (installed) nor ${p.bootedBefore}`);
    await this.#healthCheck(p.target, p.bootedBefore);
    await this.#rauc.mark('good', 'booted');
    const record = { image: p.image, releaseCounter: p.releaseCounter };
    this.#state.write({ ...s, slots: { ...s.slots, [p.target]: record }, releaseCounter: Math.max(s.releaseCounter, p.releaseCounter), current: p.target, pending: undefined });
    this.#o.log?.('slot marked good', { slot: p.target, target: p.image.filename });
  }

  /** @throws HealthCheckError */
  async #healthCheck(slot: string, fallback: string): Promise<void> {
    const { healthCheck, timeoutSeconds } = this.#o.installer;
    try {
      if (healthCheck !== undefined) {
        const env = { ...(this.#o.env ?? process.env), UPFLEET_SLOT: slot, UPFLEET_ECU_SERIAL: this.ecuSerial };
        await runShell(healthCheck, [], { ecuSerial: this.ecuSerial, phase: 'health', timeoutSeconds, env, label: 'health check' });
        return;
      }
      await untilResolved(this.#o.directorReachable, timeoutSeconds * 1000);
    } catch (cause) {
      throw new HealthCheckError(this.ecuSerial, slot, fallback, (cause as Error).message, { cause });
    }
  }

  /**
   * Undoes what install and activate did: back to the old slot (restarting
   * into it when the new one runs), the bootloader's primary the old one.
   * @throws InstallError
   */
  async abort(): Promise<void> {
    const s = this.#state.read();
    const p = s.pending;
    if (!p) return;
    const status = await this.#rauc.status();
    const onNewSlot = p.target !== undefined && p.bootedBefore !== undefined && status.booted === p.target && p.target !== p.bootedBefore;
    if (onNewSlot) {
      if (p.phase !== 'rollingBack' || p.bootId !== this.#o.bootId()) {
        this.#state.write({ ...s, pending: { ...p, phase: 'rollingBack', bootId: this.#o.bootId() } });
        await this.#rauc.mark('bad', 'booted');
        await this.#rauc.mark('active', p.bootedBefore!);
      }
      return this.#restart(`back into slot ${p.bootedBefore}`);
    }
    // An install an earlier agent process started may still run: its end switches the primary.
    await this.#untilIdle();
    await this.#restorePrimary(await this.#rauc.status());
    this.#state.write({ ...s, pending: undefined });
    rmSync(this.#staged, { force: true });
  }

  /** Waits while RAUC runs an operation (an install started before this process). @throws InstallError */
  async #untilIdle(): Promise<void> {
    const deadline = Date.now() + this.#o.installer.timeoutSeconds * 1000;
    for (let op = await this.#rauc.operation(); op !== 'idle'; op = await this.#rauc.operation()) {
      if (Date.now() > deadline) throw new InstallError(this.ecuSerial, 'install', `RAUC is still busy (${op}) after ${this.#o.installer.timeoutSeconds} s`);
      this.#o.log?.('waiting for RAUC to finish', { operation: op });
      await new Promise((r) => setTimeout(r, IDLE_POLL_MS));
    }
  }

  /** After an install that did not stay: the running slot is the bootloader's primary again. */
  async #restorePrimary(status: RaucStatus): Promise<void> {
    if (status.bootPrimary === null || status.bootPrimary === status.booted) return;
    await this.#rauc.mark('active', 'booted');
  }

  /** Runs the reboot command and waits for the machine to stop this process. @throws InstallError when it does not */
  async #restart(why: string): Promise<never> {
    const { rebootCommand, rebootTimeoutSeconds, timeoutSeconds } = this.#o.installer;
    this.#o.log?.('restarting', { why, command: rebootCommand });
    await runShell(rebootCommand, [], { ecuSerial: this.ecuSerial, phase: 'reboot', timeoutSeconds, label: 'reboot command', ...(this.#o.env && { env: this.#o.env }) });
    return this.#restarting.wait(`"${rebootCommand}"`, rebootTimeoutSeconds);
  }

  async close(): Promise<void> {
    this.#restarting.close();
  }
}

/** Calls `fn` until it resolves; after `ms` the last error is thrown. */
async function untilResolved(fn: () => Promise<void>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() + HEALTH_RETRY_MS > deadline) throw e;
      await new Promise((r) => setTimeout(r, HEALTH_RETRY_MS));
    }
  }
}
