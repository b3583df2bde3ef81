// System packages the tests and the demo use, installed here so that a fresh
// machine needs no manual step. socat makes the pty pairs of the serial tests;
// nginx serves an exported image repository as plain files
// (test/e2e/static-image-repo.test.ts); chromium runs the web console's browser
// tests (driven by playwright-core). Debian installs nginx in /usr/sbin,
// which a non-root PATH may lack, hence the extra directories looked in. rauc (with
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
  { command: 'nginx', debianPackage: 'nginx' },
  { command: 'chromium', debianPackage: 'chromium' },
];
const SBIN = ['/usr/sbin', '/sbin', '/usr/local/sbin'];

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

/** The absolute path of `command`, or undefined when it is not installed. */
export function toolPath(command) {
  const found = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  if (found.status === 0 && found.stdout.trim()) return found.stdout.trim();
  return SBIN.map((d) => `${d}/${command}`).find((p) => existsSync(p));
}

const present = (tool) => (tool.file ? existsSync(tool.file) : toolPath(tool.command) !== undefined);

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
    // Another apt-get (a parallel test run) may hold the dpkg lock for a while: wait for it.
    const apt = (...args) => spawnSync('apt-get', ['-o', 'DPkg::Lock::Timeout=300', ...args], opts);
    apt('install', '-y', '--no-install-recommends', ...pkgs);
    if (missing.some((t) => !present(t))) {
      apt('update');
      apt('install', '-y', '--no-install-recommends', ...pkgs);
    }
  }
  return tools.filter((t) => !present(t)).map((t) => t.command ?? t.file);
}
