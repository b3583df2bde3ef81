/**
 * Test support: the REAL rauc (Debian's `rauc`, its service included) on an
 * A/B system made of files, without a VM:
 * - slots `rootfs.0` (bootname A) and `rootfs.1` (B) are raw slots on image
 *   files; RAUC writes them as it writes a partition;
 * - `bootloader=custom` with a backend script that keeps the bootloader's
 *   state (primary slot, good/bad per slot, tried per slot) in files, as
 *   GRUB's environment would (scripts/vm/guest/grub.cfg): a boot marks the
 *   slot tried, `mark-good`/`mark-active` clear it, and a tried slot is
 *   skipped at the next boot (nobody confirmed it);
 * - a test-only keyring: a CA made with openssl signs the bundles
 *   (`rauc bundle`), and a second CA signs bundles the system must refuse;
 * - `rauc service` on a private `dbus-daemon --session` bus (rauc's clients
 *   use the session bus when DBUS_STARTER_BUS_TYPE=session), started with
 *   `--override-boot-slot` for the slot the simulated bootloader chose.
 * `reboot()` is the simulated restart: it stops the service, lets the
 * "bootloader" pick a slot (the primary when it is good and not tried, else
 * the other one when it is, or the other one when told the new slot does not
 * boot; no such slot is an error), marks it tried, and starts the service
 * again with a new boot ID.
 * Needs root (rauc mounts the bundle through a loop device); `unavailable()`
 * says why it cannot run here.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type BootName = 'A' | 'B';

const TOOLS = ['rauc', 'mksquashfs', 'dbus-daemon', 'openssl', 'busctl'];

/** Why the real rauc cannot run on this machine (undefined: it can). */
export function raucUnavailable(): string | undefined {
  const missing = TOOLS.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' }).status !== 0);
  if (missing.length > 0) return `missing ${missing.join(', ')} (scripts/system-tools.mjs installs them as root)`;
  if (process.getuid?.() !== 0) return 'rauc mounts bundles: needs root';
  if (!existsSync('/dev/loop-control')) return 'no loop devices (/dev/loop-control)';
  if (!readFileSync('/proc/filesystems', 'utf8').includes('squashfs')) return 'the kernel has no squashfs';
  return undefined;
}

function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...(env && { env }) });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? r.stderr}`);
  return r.stdout;
}

const SLOT_BYTES = 4 << 20;

export class RaucTestSystem {
  readonly dir: string;
  /** The environment rauc's clients need (the private bus). */
  readonly env: NodeJS.ProcessEnv;
  booted: BootName = 'A';
  bootId = randomUUID();
  #bus: ChildProcess;
  #service: ChildProcess | undefined;
  #serviceLog = '';

  private constructor(dir: string, bus: ChildProcess, address: string) {
    this.dir = dir;
    this.#bus = bus;
    this.env = { ...process.env, DBUS_SESSION_BUS_ADDRESS: address, DBUS_STARTER_BUS_TYPE: 'session' };
  }

  static async create(): Promise<RaucTestSystem> {
    const dir = mkdtempSync(join(tmpdir(), 'upfleet-rauc-'));
    for (const ca of ['ca', 'other-ca']) {
      run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, `${ca}.key.pem`), '-out', join(dir, `${ca}.cert.pem`), '-subj', `/CN=upfleet-test-${ca}`, '-days', '2']);
    }
    const boot = join(dir, 'boot');
    mkdirSync(boot);
    mkdirSync(join(dir, 'mnt'));
    // The bootloader's environment, as RAUC's custom backend interface sees it.
    writeFileSync(
      join(dir, 'backend.sh'),
      `#!/bin/sh
S="${boot}"
case "$1" in
  get-primary) cat "$S/primary" 2>/dev/null || echo A ;;
  set-primary) echo "$2" > "$S/primary"; echo good > "$S/state.$2"; rm -f "$S/tried.$2" ;;
  get-state) cat "$S/state.$2" 2>/dev/null || echo good ;;
  set-state) echo "$3" > "$S/state.$2"; [ "$3" = good ] && rm -f "$S/tried.$2"; true ;;
  get-current) cat "$S/current" 2>/dev/null || echo A ;;
  *) exit 1 ;;
esac
`,
    );
    chmodSync(join(dir, 'backend.sh'), 0o755);
    writeFileSync(
      join(dir, 'system.conf'),
      `[system]
compatible=upfleet-test-gateway
bootloader=custom
mountprefix=${join(dir, 'mnt')}
statusfile=${join(dir, 'rauc.status')}

[handlers]
bootloader-custom-backend=${join(dir, 'backend.sh')}

[keyring]
path=${join(dir, 'ca.cert.pem')}

[slot.rootfs.0]
device=${join(dir, 'slot-a.img')}
type=raw
bootname=A

[slot.rootfs.1]
device=${join(dir, 'slot-b.img')}
type=raw
bootname=B
`,
    );
    writeFileSync(join(dir, 'slot-a.img'), Buffer.alloc(SLOT_BYTES));
    writeFileSync(join(dir, 'slot-b.img'), Buffer.alloc(SLOT_BYTES));
    const bus = spawn('dbus-daemon', ['--session', '--nofork', '--nopidfile', '--print-address=1', `--address=unix:path=${join(dir, 'bus')}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    const address = await new Promise<string>((resolve, reject) => {
      let out = '';
      bus.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!.trim());
      });
      bus.once('exit', (code) => reject(new Error(`dbus-daemon exited with ${code}`)));
    });
    const system = new RaucTestSystem(dir, bus, address);
    await system.#startService();
    return system;
  }

  /** Where a slot's bytes are. */
  slotFile(slot: BootName): string {
    return join(this.dir, slot === 'A' ? 'slot-a.img' : 'slot-b.img');
  }

  /** The first `length` bytes of a slot. */
  slotBytes(slot: BootName, length: number): Buffer {
    return readFileSync(this.slotFile(slot)).subarray(0, length);
  }

  /** The bootloader's state: its primary slot and each slot's good/bad. */
  bootloader(): { primary: BootName; A: string; B: string } {
    const read = (f: string, d: string) => (existsSync(join(this.dir, 'boot', f)) ? readFileSync(join(this.dir, 'boot', f), 'utf8').trim() : d);
    return { primary: read('primary', 'A') as BootName, A: read('state.A', 'good'), B: read('state.B', 'good') };
  }

  /** The slots the bootloader started and nobody confirmed since (they are skipped at the next boot). */
  tried(): BootName[] {
    return (['A', 'B'] as const).filter((s) => existsSync(join(this.dir, 'boot', `tried.${s}`)));
  }

  /**
   * A RAUC bundle for this system holding `payload` as the rootfs image,
   * signed by the system's CA (or by a CA it does not trust).
   */
  bundle(version: string, payload: Uint8Array, o: { signedBy?: 'ca' | 'other-ca' } = {}): Buffer {
    const content = mkdtempSync(join(this.dir, 'content-'));
    const out = join(this.dir, `bundle-${version}-${randomUUID()}.raucb`);
    try {
      writeFileSync(join(content, 'rootfs.img'), payload);
      writeFileSync(join(content, 'manifest.raucm'), `[update]\ncompatible=upfleet-test-gateway\nversion=${version}\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.img\n`);
      const ca = o.signedBy ?? 'ca';
      run('rauc', ['bundle', `--cert=${join(this.dir, `${ca}.cert.pem`)}`, `--key=${join(this.dir, `${ca}.key.pem`)}`, content, out]);
      return readFileSync(out);
    } finally {
      rmSync(content, { recursive: true, force: true });
      rmSync(out, { force: true });
    }
  }

  /** RAUC's current operation (idle, installing), as its D-Bus service reports it. */
  operation(): string {
    return (JSON.parse(run('busctl', ['--user', '--json=short', 'get-property', 'de.pengutronix.rauc', '/', 'de.pengutronix.rauc.Installer', 'Operation'], this.env)) as { data: string }).data;
  }

  /** `rauc status` as JSON (through the service). */
  status(): { booted: string; boot_primary: string } {
    return JSON.parse(run('rauc', ['status', '--output-format=json'], this.env)) as { booted: string; boot_primary: string };
  }

  /**
   * The simulated restart: the bootloader starts its primary slot when it is
   * good and not tried, else the other one when it is; `newSlotFails` makes
   * the primary not boot (the bootloader falls back to the other slot on its
   * own). The slot started is marked tried.
   * @throws Error when no slot is good and untried
   */
  async reboot(o: { newSlotFails?: boolean } = {}): Promise<BootName> {
    await this.#stopService();
    const b = this.bootloader();
    const tried = this.tried();
    const other: BootName = b.primary === 'A' ? 'B' : 'A';
    const bootable = (s: BootName) => b[s] === 'good' && !tried.includes(s);
    const chosen = [...(o.newSlotFails ? [] : [b.primary]), other].find(bootable);
    if (!chosen) throw new Error(`no good untried slot to boot: ${JSON.stringify({ ...b, tried })}`);
    this.booted = chosen;
    writeFileSync(join(this.dir, 'boot', 'current'), this.booted);
    writeFileSync(join(this.dir, 'boot', `tried.${this.booted}`), '');
    this.bootId = randomUUID();
    await this.#startService();
    return this.booted;
  }

  async #startService(): Promise<void> {
    this.#serviceLog = '';
    const service = spawn('rauc', ['service', `--conf=${join(this.dir, 'system.conf')}`, `--override-boot-slot=${this.booted}`], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    service.stderr!.on('data', (d: Buffer) => (this.#serviceLog = (this.#serviceLog + d.toString()).slice(-2000)));
    service.stdout!.on('data', () => undefined);
    this.#service = service;
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = spawnSync('rauc', ['status', '--output-format=json'], { env: this.env, stdio: 'ignore' });
      if (r.status === 0) return;
      if (service.exitCode !== null || Date.now() > deadline) throw new Error(`rauc service did not start: ${this.#serviceLog}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async #stopService(): Promise<void> {
    const s = this.#service;
    this.#service = undefined;
    if (!s || s.exitCode !== null) return;
    const exited = new Promise((r) => s.once('exit', r));
    s.kill('SIGTERM');
    await exited;
  }

  async close(): Promise<void> {
    await this.#stopService().catch(() => undefined);
    if (this.#bus.exitCode === null) {
      const exited = new Promise((r) => this.#bus.once('exit', r));
      this.#bus.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
