/**
 * The `rauc` command line, as the primary's RAUC installer uses it. On a
 * system with the RAUC service, each call is a D-Bus request to it (so the
 * agent needs no access to block devices); `rauc` finds the bus as usual
 * (the system bus; the session bus when DBUS_STARTER_BUS_TYPE=session).
 *
 * Invariants:
 * - `status` is `rauc status --output-format=json`, checked field by field:
 *   an answer without a booted slot is an InstallError, never a guess.
 * - RAUC refuses `status` while it runs another method (an install an earlier
 *   agent process started): asked again every half second, up to `timeoutSeconds`.
 * - Slots are named as RAUC names them (`rootfs.0`); `booted` is the slot
 *   whose state is "booted" (its `bootname` matches RAUC's `booted`).
 */
import { InstallError } from '../errors.ts';
import { runCommand } from './image-file.ts';

export interface RaucSlot {
  /** RAUC's slot name, e.g. `rootfs.1`. */
  name: string;
  bootname: string | null;
  /** RAUC's slot state: booted, active or inactive. */
  state: string;
  /** The bootloader's view: good or bad (absent for slots it does not boot). */
  bootStatus: string | null;
}

export interface RaucStatus {
  compatible: string;
  /** The slot the system booted from. */
  booted: string;
  /** The slot the bootloader boots next (null when RAUC cannot tell). */
  bootPrimary: string | null;
  slots: RaucSlot[];
}

export interface RaucClientOptions {
  ecuSerial: string;
  /** Seconds each call may take (`install` included). */
  timeoutSeconds: number;
  env?: NodeJS.ProcessEnv;
}

type Raw = Record<string, unknown>;

/** RAUC's answer while another D-Bus method (an install) runs. */
const BUSY = /already processing a different method/;
const BUSY_RETRY_MS = 500;

const isObject = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v);
const strOrNull = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/**
 * Reads RAUC's JSON status.
 * @throws InstallError (phase `rauc status`) naming what is missing.
 */
export function parseRaucStatus(text: string, ecuSerial: string): RaucStatus {
  const bad = (why: string) => new InstallError(ecuSerial, 'rauc status', `unexpected answer (${why}): ${text.slice(0, 200)}`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (!isObject(raw) || !Array.isArray(raw.slots)) throw bad('no slots');
  const slots: RaucSlot[] = raw.slots.flatMap((entry: unknown) => {
    if (!isObject(entry)) throw bad('a slot that is not an object');
    return Object.entries(entry).map(([name, s]) => {
      if (!isObject(s) || typeof s.state !== 'string') throw bad(`slot ${name} without a state`);
      return { name, bootname: strOrNull(s.bootname), state: s.state, bootStatus: strOrNull(s.boot_status) };
    });
  });
  const bootedName = strOrNull(raw.booted);
  const booted = slots.find((s) => s.state === 'booted' && s.bootname !== null) ?? slots.find((s) => s.bootname !== null && s.bootname === bootedName);
  if (!booted) throw bad('no booted slot');
  return { compatible: strOrNull(raw.compatible) ?? '', booted: booted.name, bootPrimary: strOrNull(raw.boot_primary), slots };
}

export class RaucClient {
  constructor(private readonly o: RaucClientOptions) {}

  #run(args: string[], phase: string, captureStdout = false): Promise<string> {
    return runCommand('rauc', args, { ecuSerial: this.o.ecuSerial, phase, timeoutSeconds: this.o.timeoutSeconds, captureStdout, label: `rauc ${args[0]}`, ...(this.o.env && { env: this.o.env }) });
  }

  /** @throws InstallError */
  async status(): Promise<RaucStatus> {
    const deadline = Date.now() + this.o.timeoutSeconds * 1000;
    for (;;) {
      try {
        return parseRaucStatus(await this.#run(['status', '--output-format=json'], 'rauc status', true), this.o.ecuSerial);
      } catch (e) {
        if (!(e instanceof InstallError && BUSY.test(e.message)) || Date.now() + BUSY_RETRY_MS > deadline) throw e;
        await new Promise((r) => setTimeout(r, BUSY_RETRY_MS));
      }
    }
  }

  /** Installs the bundle into the other slot, which RAUC then makes the bootloader's primary. @throws InstallError */
  async install(bundle: string): Promise<void> {
    await this.#run(['install', bundle], 'install');
  }

  /**
   * RAUC's current operation (`idle`, `installing`), read from its D-Bus service
   * with busctl: an install started by an earlier agent process may still run.
   * @throws InstallError
   */
  async operation(): Promise<string> {
    const env = this.o.env ?? process.env;
    const bus = env.DBUS_STARTER_BUS_TYPE === 'session' ? '--user' : '--system';
    const args = [bus, '--json=short', 'get-property', 'de.pengutronix.rauc', '/', 'de.pengutronix.rauc.Installer', 'Operation'];
    const out = await runCommand('busctl', args, { ecuSerial: this.o.ecuSerial, phase: 'rauc operation', timeoutSeconds: this.o.timeoutSeconds, captureStdout: true, label: 'busctl', env });
    try {
      const data = (JSON.parse(out) as { data?: unknown }).data;
      if (typeof data === 'string') return data;
    } catch {
      // reported below
    }
    throw new InstallError(this.o.ecuSerial, 'rauc operation', `unexpected answer: ${out.slice(0, 200)}`);
  }

  /** `rauc status mark-<state> <slot>`; slot is a slot name, `booted` or `other`. @throws InstallError */
  async mark(state: 'good' | 'bad' | 'active', slot: string): Promise<void> {
    await this.#run(['status', `mark-${state}`, slot], `mark-${state}`);
  }
}
