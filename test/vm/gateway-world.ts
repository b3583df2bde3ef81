/**
 * The host side of the VM test (docs/vm-test.md): the real director and image
 * repository on 127.0.0.1 (test/support/stack.ts), one simulated secondary ECU
 * (`upfleet-sim ecu`, a child process) on a socat pty pair whose other end is the
 * guest's ttyS1, and the run's copy of the cached disk with its data partition
 * written for this back end (the provisioning roots and token of this director).
 *
 * Invariants:
 * - The guest reaches the host only through the two guestfwd addresses of its
 *   agent.json (scripts/vm/guest/agent.json), each forwarded to one loopback port.
 * - The ECU and the back end outlive power cuts of the VM, like real ones.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPtyPair, type PtyPair } from '@upfleet/device-sim/src/index.ts';
import { PROVISIONING_TOKEN, Stack } from '../support/stack.ts';
import type { VmImage } from '../../scripts/vm/image.ts';
import { QemuVm, type Boot, type Forward } from './qemu-vm.ts';

const REPO = join(import.meta.dirname, '..', '..');

/** What the image's agent.json says: the device, its ECUs and where it finds the back end. */
export interface GuestAgentConfig {
  deviceId: string;
  directorUrl: string;
  imageRepoUrl: string;
  ecus: { primary: { serial: string; hardwareId: string }; secondaries: Array<{ serial: string; hardwareId: string }> };
}

export const GUEST_CONFIG = JSON.parse(readFileSync(join(REPO, 'scripts', 'vm', 'guest', 'agent.json'), 'utf8')) as GuestAgentConfig;

function guestAddress(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || 80}`;
}

function sh(command: string, args: string[]): void {
  const r = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${r.stderr?.toString().trim()}`);
}

export class GatewayWorld {
  vm: QemuVm | undefined;
  readonly #pastBoots: Boot[] = [];
  #consumed = 0;

  private constructor(
    readonly dir: string,
    readonly disk: string,
    readonly stack: Stack,
    readonly pty: PtyPair,
    readonly ecu: ChildProcess,
    readonly log: (line: string) => void,
  ) {}

  static async start(image: VmImage, log: (line: string) => void): Promise<GatewayWorld> {
    const dir = mkdtempSync(join(image.dir, '..', 'run-'));
    const stack = await Stack.start({ mqtt: 'none', directorClock: 'real' });
    try {
      const disk = join(dir, 'disk.img');
      sh('cp', ['--sparse=always', image.disk, disk]);
      writeDataPartition(dir, disk, image, stack);

      const pty = await createPtyPair({ dir: join(dir) });
      const ecuDir = join(dir, 'ecu');
      mkdirSync(ecuDir);
      writeFileSync(join(ecuDir, 'director-root.json'), stack.directorRootBytes);
      writeFileSync(join(ecuDir, 'image-root.json'), stack.imageRootBytes);
      const sec = GUEST_CONFIG.ecus.secondaries[0]!;
      writeFileSync(join(ecuDir, 'ecu.json'), JSON.stringify({
        ecuSerial: sec.serial, hardwareId: sec.hardwareId, verification: 'full',
        directorRoot: 'director-root.json', imageRoot: 'image-root.json', rebootMs: 500,
      }));
      const ecu = spawn(process.execPath, [join(REPO, 'device-sim', 'bin', 'upfleet-sim'), 'ecu', '--port', pty.b, '--config', join(ecuDir, 'ecu.json')], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      process.on('exit', () => ecu.kill('SIGKILL'));
      const ecuLog = join(dir, 'ecu.log');
      ecu.stdout!.on('data', (d: Buffer) => writeFileSync(ecuLog, d, { flag: 'a' }));
      ecu.stderr!.on('data', (d: Buffer) => writeFileSync(ecuLog, d, { flag: 'a' }));
      return new GatewayWorld(dir, disk, stack, pty, ecu, log);
    } catch (e) {
      await stack.close();
      throw e;
    }
  }

  get forwards(): Forward[] {
    return [
      { guest: guestAddress(GUEST_CONFIG.directorUrl), hostPort: Number(new URL(this.stack.director.url).port) },
      { guest: guestAddress(GUEST_CONFIG.imageRepoUrl), hostPort: Number(new URL(this.stack.imageRepo.url).port) },
    ];
  }

  /** Every boot so far, of every qemu process. */
  get boots(): Boot[] {
    return [...this.#pastBoots, ...(this.vm?.boots ?? [])];
  }

  /** Powers the VM on (a new qemu process on the same disk). */
  async powerOn(): Promise<QemuVm> {
    if (this.vm) this.#pastBoots.push(...this.vm.boots);
    this.#consumed = 0;
    this.vm = await QemuVm.start({
      disk: this.disk, dir: this.dir, ecuTty: this.pty.a, forwards: this.forwards, memoryMb: 512, cpus: 1,
      log: (line) => this.log(line),
    });
    return this.vm;
  }

  /** The boot after the last one this returned (of the current qemu process). */
  async nextBoot(timeoutMs = 900_000): Promise<Boot> {
    return this.vm!.waitForBoot(++this.#consumed, timeoutMs);
  }

  async close(): Promise<void> {
    if (this.vm?.running) await this.vm.powerCut();
    // Its output goes to a file in this.dir: wait until its pipes are closed before removing the directory.
    const ecuClosed = this.ecu.exitCode !== null || this.ecu.signalCode !== null ? Promise.resolve() : new Promise((r) => this.ecu.once('close', r));
    this.ecu.kill('SIGTERM');
    await ecuClosed;
    await this.pty.close().catch(() => undefined);
    await this.stack.close();
    if (!process.env.KEEP) rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * The data partition (/var/lib/upfleet) as a factory would leave it: this director's
 * and this image repository's roots and the provisioning token, owned by the agent's
 * user; the device makes its key and registers at first boot.
 */
function writeDataPartition(dir: string, disk: string, image: VmImage, stack: Stack): void {
  const data = join(dir, 'data');
  mkdirSync(join(data, 'provisioning'), { recursive: true });
  writeFileSync(join(data, 'provisioning', 'director-root.json'), stack.directorRootBytes);
  writeFileSync(join(data, 'provisioning', 'image-root.json'), stack.imageRootBytes);
  writeFileSync(join(data, 'provisioning.env'), `UPFLEET_PROVISIONING_TOKEN=${PROVISIONING_TOKEN}\n`, { mode: 0o600 });
  const uid = image.layout.upfleetUid;
  for (const p of [data, join(data, 'provisioning'), join(data, 'provisioning', 'director-root.json'), join(data, 'provisioning', 'image-root.json'), join(data, 'provisioning.env')]) {
    chownSync(p, uid, uid);
  }
  chmodSync(data, 0o750);
  const [offset, bytes] = image.layout.partitions.data;
  const fs = join(dir, 'data.ext4');
  sh('mkfs.ext4', ['-q', '-F', '-L', 'upfleet-data', '-d', data, fs, `${bytes / 1024 / 1024}M`]);
  sh('dd', [`if=${fs}`, `of=${disk}`, 'bs=1M', `seek=${offset / 1024 / 1024}`, 'conv=notrunc,sparse', 'status=none']);
  rmSync(fs);
  rmSync(data, { recursive: true });
}
