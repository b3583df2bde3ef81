/**
 * One gateway VM of the VM test (docs/vm-test.md): qemu-system-x86_64 under software
 * emulation (TCG; no KVM here) booting the A/B disk through SeaBIOS and GRUB.
 *
 *   ttyS0  the console (GRUB, kernel, systemd), kept in `console.log`
 *   ttyS1  a host tty: the secondary ECU's serial line (a pty of upfleet-sim ecu)
 *   ttyS2  the command channel (Unix socket; scripts/vm/guest/vm-shell)
 *   net    user networking with restrict=on: the guest reaches nothing but the
 *          guestfwd addresses, each a fresh `socat` to one 127.0.0.1 port per connection
 *
 * Invariants:
 * - A boot is counted from the power-on (process start) or the reset (the kernel's
 *   "reboot: Restarting system" line) to the guest's READY line on the command channel.
 * - `powerCut()` is SIGKILL of qemu: the guest's page cache and everything in flight is
 *   lost; what qemu already wrote to the disk file stays (as on a real disk).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';

export interface Forward {
  /** Guest address and port, e.g. 10.0.2.100:80 */
  guest: string;
  hostPort: number;
}

export interface VmOptions {
  disk: string;
  /** Sockets and logs of this VM. */
  dir: string;
  /** Host tty that the guest's ttyS1 is wired to. */
  ecuTty: string;
  forwards: Forward[];
  memoryMb?: number;
  cpus?: number;
  log?: (line: string) => void;
}

export interface Boot {
  /** RAUC bootname of the booted slot (kernel command line `rauc.slot=`). */
  slot: string;
  /** From power-on or reset to READY. */
  seconds: number;
  /** From power-on or reset to GRUB's "booting slot" line (firmware and GRUB start). */
  toGrubSeconds: number | null;
  /** The guest's own uptime at READY (kernel start to READY). */
  guestUptimeSeconds: number;
}

interface Pending {
  id: number;
  resolve: (r: { out: string; rc: number }) => void;
}

export class VmError extends Error {
  override name = 'VmError';
}

/** qemu processes of this test process: killed when it exits, however it exits. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

const READY = /^@@UPFLEET-READY (\S*) (\S+)$/;
const END = /^@@UPFLEET-END (\d+) (\d+)$/;

export class QemuVm {
  readonly boots: Boot[] = [];
  readonly #o: VmOptions;
  readonly #child: ChildProcess;
  readonly #console: WriteStream;
  readonly #exited: Promise<void>;
  #resetAt = performance.now();
  #grubAt: number | null = null;
  #cmd: Socket | undefined;
  #cmdBuffer = '';
  #outLines: string[] = [];
  #nextId = 1;
  #pending: Pending | undefined;
  #bootWaiters: Array<() => void> = [];
  #consoleTail = '';

  private constructor(o: VmOptions) {
    this.#o = o;
    const netdev = ['user', 'id=n0', 'restrict=on',
      ...o.forwards.map((f) => `guestfwd=tcp:${f.guest}-cmd:socat STDIO TCP:127.0.0.1:${f.hostPort}`)].join(',');
    const args = [
      '-nodefaults', '-machine', 'pc,accel=tcg', '-smp', String(o.cpus ?? 1), '-m', String(o.memoryMb ?? 512),
      '-display', 'none', '-rtc', 'base=utc',
      '-drive', `file=${o.disk},format=raw,if=virtio,cache=unsafe`,
      '-netdev', netdev, '-device', 'virtio-net-pci,netdev=n0,romfile=',
      '-chardev', 'stdio,id=con,signal=off', '-serial', 'chardev:con',
      '-chardev', `serial,id=ecu,path=${o.ecuTty}`, '-serial', 'chardev:ecu',
      '-chardev', `socket,id=cmd,path=${join(o.dir, 'cmd.sock')},server=on,wait=off`, '-serial', 'chardev:cmd',
    ];
    this.#console = createWriteStream(join(o.dir, 'console.log'), { flags: 'a' });
    this.#child = spawn('qemu-system-x86_64', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child.stdout!.on('data', (d: Buffer) => this.#onConsole(d));
    this.#child.stderr!.on('data', (d: Buffer) => this.#console.write(`[qemu] ${d.toString()}`));
    live.add(this.#child);
    this.#exited = new Promise((resolve) => this.#child.once('exit', () => (live.delete(this.#child), resolve())));
  }

  /** Starts qemu (power-on) and connects the command channel. */
  static async start(o: VmOptions): Promise<QemuVm> {
    const vm = new QemuVm(o);
    await vm.#connectCommandChannel();
    return vm;
  }

  #log(line: string): void {
    this.#o.log?.(line);
  }

  #onConsole(d: Buffer): void {
    this.#console.write(d);
    // The reset of a reboot starts the next boot's clock.
    const text = this.#consoleTail + d.toString('latin1');
    this.#consoleTail = text.slice(-64);
    if (/reboot: Restarting system/.test(text)) {
      this.#resetAt = performance.now();
      this.#grubAt = null;
      this.#consoleTail = '';
    } else if (this.#grubAt === null && /upfleet-grub: booting/.test(text)) {
      this.#grubAt = performance.now();
      this.#consoleTail = '';
    }
  }

  async #connectCommandChannel(): Promise<void> {
    const path = join(this.#o.dir, 'cmd.sock');
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        this.#cmd = await new Promise<Socket>((resolve, reject) => {
          const s = createConnection(path, () => resolve(s));
          s.once('error', reject);
        });
        break;
      } catch (e) {
        if (this.#child.exitCode !== null || Date.now() > deadline) throw new VmError(`qemu's command channel ${path} did not open: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    this.#cmd.on('data', (d: Buffer) => this.#onCommandData(d.toString('utf8')));
    this.#cmd.on('error', () => undefined);
  }

  #onCommandData(text: string): void {
    this.#cmdBuffer += text;
    let nl: number;
    while ((nl = this.#cmdBuffer.indexOf('\n')) >= 0) {
      const line = this.#cmdBuffer.slice(0, nl).replace(/\r$/, '');
      this.#cmdBuffer = this.#cmdBuffer.slice(nl + 1);
      const ready = READY.exec(line);
      if (ready) {
        const boot = {
          slot: ready[1]!,
          seconds: (performance.now() - this.#resetAt) / 1000,
          toGrubSeconds: this.#grubAt === null ? null : (this.#grubAt - this.#resetAt) / 1000,
          guestUptimeSeconds: Number(ready[2]),
        };
        this.boots.push(boot);
        this.#log(`boot ${this.boots.length}: slot ${boot.slot} ready after ${boot.seconds.toFixed(1)} s (GRUB after ${boot.toGrubSeconds?.toFixed(1) ?? '?'} s, guest uptime at READY ${boot.guestUptimeSeconds.toFixed(1)} s)`);
        // A command sent to the previous boot gets no answer.
        this.#pending = undefined;
        this.#outLines = [];
        for (const w of this.#bootWaiters.splice(0)) w();
        continue;
      }
      const end = END.exec(line);
      if (end && this.#pending && Number(end[1]) === this.#pending.id) {
        const p = this.#pending;
        this.#pending = undefined;
        p.resolve({ out: this.#outLines.join('\n'), rc: Number(end[2]) });
        this.#outLines = [];
        continue;
      }
      this.#outLines.push(line);
    }
  }

  /** Waits until boot number `n` (1-based) reached READY. @throws VmError on timeout or qemu exit */
  async waitForBoot(n: number, timeoutMs: number): Promise<Boot> {
    const deadline = Date.now() + timeoutMs;
    while (this.boots.length < n) {
      if (this.#child.exitCode !== null || this.#child.signalCode !== null) throw new VmError(`qemu exited before boot ${n}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new VmError(`boot ${n} not ready within ${timeoutMs / 1000} s (see ${join(this.#o.dir, 'console.log')})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.#bootWaiters.push(() => (clearTimeout(t), resolve()));
      });
    }
    return this.boots[n - 1]!;
  }

  /**
   * Runs a shell command in the guest as root over the command channel.
   * @throws VmError on timeout (e.g. the guest rebooted meanwhile)
   */
  async exec(command: string, timeoutMs = 60_000): Promise<{ out: string; rc: number }> {
    if (this.#pending) throw new VmError('one command at a time');
    if (command.includes('\n')) throw new VmError('a command is one line');
    const id = this.#nextId++;
    let mine: Pending | undefined;
    const answer = new Promise<{ out: string; rc: number }>((resolve) => (this.#pending = mine = { id, resolve }));
    this.#outLines = [];
    this.#cmd!.write(`${id} ${command}\n`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new VmError(`guest command timed out after ${timeoutMs / 1000} s: ${command}`)), timeoutMs);
    });
    try {
      return await Promise.race([answer, timeout]);
    } finally {
      clearTimeout(timer);
      if (this.#pending === mine) this.#pending = undefined;
    }
  }

  /** `exec` that must succeed; returns its output. @throws VmError */
  async sh(command: string, timeoutMs?: number): Promise<string> {
    const r = await this.exec(command, timeoutMs);
    if (r.rc !== 0) throw new VmError(`guest command failed (${r.rc}): ${command}\n${r.out}`);
    return r.out;
  }

  /** Power cut: SIGKILL of qemu. */
  async powerCut(): Promise<void> {
    this.#child.kill('SIGKILL');
    await this.#exited;
    this.#cmd?.destroy();
    await new Promise<void>((r) => this.#console.end(r));
  }

  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }
}
