// System packages the tests and the demo use, installed here so that a fresh
// machine needs no manual step. socat makes the pty pairs of the serial tests; rauc (with
// mksquashfs, dbus-daemon and openssl) runs the RAUC installer's tests for real; the
// Type=notify test runs systemd-notify against a python3 receiver.
// The optional `vm` set is what `npm run test:vm` needs (scripts/vm/, docs/vm-test.md):
// the emulator, the Debian image builder, GRUB's BIOS modules and tools, RAUC (bundles
// are made on the host), and the file system and partition tools that build the disk
// image in a plain file (no loop device, no mount).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const BASE = [
  { command: 'socat', debianPackage: 'socat' },
  { command: 'rauc', debianPackage: 'rauc' },
  { command: 'mksquashfs', debianPackage: 'squashfs-tools' },
  { command: 'dbus-daemon', debianPackage: 'dbus-daemon' },
  { command: 'openssl', debianPackage: 'openssl' },
  // systemd-notify and a stand-in for the manager's notify socket (Node cannot receive Unix datagrams).
  { command: 'systemd-notify', debianPackage: 'systemd' },
  { command: 'python3', debianPackage: 'python3-minimal' },
];

const SETS = {
  base: BASE,
  vm: [
    { command: 'socat', debianPackage: 'socat' },
    { command: 'qemu-system-x86_64', debianPackage: 'qemu-system-x86' },
    { command: 'mmdebstrap', debianPackage: 'mmdebstrap' },
    { command: 'grub-mkimage', debianPackage: 'grub-common' },
    { file: '/usr/lib/grub/i386-pc/boot.img', debianPackage: 'grub-pc-bin' },
    { command: 'grub-editenv', debianPackage: 'grub-common' },
    { command: 'rauc', debianPackage: 'rauc' },
    { command: 'mksquashfs', debianPackage: 'squashfs-tools' },
    { command: 'mkfs.ext4', debianPackage: 'e2fsprogs' },
    { command: 'sfdisk', debianPackage: 'fdisk' },
    { command: 'openssl', debianPackage: 'openssl' },
    { command: 'zstd', debianPackage: 'zstd' },
  ],
};

function present(tool) {
  if (tool.file) return existsSync(tool.file);
  return spawnSync('sh', ['-c', `command -v ${tool.command}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Installs missing tools of a set (`base`, default; `vm`) with apt-get when running
 * as root; returns the names still missing.
 */
export function ensureSystemTools({ quiet = false, set = 'base' } = {}) {
  const tools = SETS[set];
  if (!tools) throw new Error(`unknown tool set ${set}`);
  const missing = tools.filter((t) => !present(t));
  if (missing.length > 0 && process.getuid?.() === 0 && present({ command: 'apt-get' })) {
    const pkgs = [...new Set(missing.map((t) => t.debianPackage))];
    if (!quiet) console.error(`installing system packages: ${pkgs.join(' ')}`);
    const opts = { stdio: quiet ? 'ignore' : ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } };
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], opts);
    if (missing.some((t) => !present(t))) {
      spawnSync('apt-get', ['update'], opts);
      spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], opts);
    }
  }
  return tools.filter((t) => !present(t)).map((t) => t.command ?? t.file);
}
