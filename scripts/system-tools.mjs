// System packages the tests and the demo use, installed here so that a fresh
// machine needs no manual step. socat makes the pty pairs of the serial tests; rauc (with
// mksquashfs, dbus-daemon and openssl) runs the RAUC installer's tests for real; the
// Type=notify test runs systemd-notify against a python3 receiver.
import { spawnSync } from 'node:child_process';

const TOOLS = [
  { command: 'socat', debianPackage: 'socat' },
  { command: 'rauc', debianPackage: 'rauc' },
  { command: 'mksquashfs', debianPackage: 'squashfs-tools' },
  { command: 'dbus-daemon', debianPackage: 'dbus-daemon' },
  { command: 'openssl', debianPackage: 'openssl' },
  // systemd-notify and a stand-in for the manager's notify socket (Node cannot receive Unix datagrams).
  { command: 'systemd-notify', debianPackage: 'systemd' },
  { command: 'python3', debianPackage: 'python3-minimal' },
];

function has(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** Installs missing tools with apt-get when running as root; returns the names still missing. */
export function ensureSystemTools({ quiet = false } = {}) {
  const missing = TOOLS.filter((t) => !has(t.command));
  if (missing.length > 0 && process.getuid?.() === 0 && has('apt-get')) {
    const pkgs = missing.map((t) => t.debianPackage);
    if (!quiet) console.error(`installing system packages: ${pkgs.join(' ')}`);
    const opts = { stdio: quiet ? 'ignore' : ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } };
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], opts);
    if (missing.some((t) => !has(t.command))) {
      spawnSync('apt-get', ['update'], opts);
      spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], opts);
    }
  }
  return TOOLS.filter((t) => !has(t.command)).map((t) => t.command);
}
