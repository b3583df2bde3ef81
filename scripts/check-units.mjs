#!/usr/bin/env node
// Checks meta-upfleet's systemd units with the host's systemd-analyze (not part of
// `npm test`: CI may not have systemd): `verify` must report nothing but the binary
// that only exists on the device, and `security --offline=yes` must score the agent's
// service at most MAX_EXPOSURE (3.7 before the watchdog/hardening work).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MAX_EXPOSURE = 2.0;
const files = fileURLToPath(new URL('../yocto/meta-upfleet/recipes-upfleet/upfleet-agent/files/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'upfleet-units-'));
let failed = false;
try {
  const units = readdirSync(files).filter((f) => /\.(service|path)$/.test(f));
  for (const unit of units) {
    writeFileSync(join(dir, unit), readFileSync(join(files, unit), 'utf8').replaceAll('@BINDIR@', '/usr/bin').replaceAll('@LIBEXECDIR@', '/usr/libexec'));
  }
  for (const unit of units) {
    const r = spawnSync('systemd-analyze', ['verify', join(dir, unit)], { encoding: 'utf8' });
    // The agent's binaries are installed on the device only.
    const problems = (r.stdout + r.stderr).split('\n').filter((l) => l.trim() && !/Command \/usr\/(bin|libexec)\/upfleet[^ ]* is not executable/.test(l));
    console.log(`${unit}: verify ${problems.length === 0 ? 'clean' : problems.join('; ')}`);
    if (problems.length > 0) failed = true;
  }
  const security = spawnSync('systemd-analyze', ['security', '--offline=yes', join(dir, 'upfleet-agent.service')], { encoding: 'utf8' });
  const score = Number(security.stdout.match(/Overall exposure level for [^:]+: ([\d.]+)/)?.[1]);
  console.log(`upfleet-agent.service: exposure ${score} (at most ${MAX_EXPOSURE})`);
  if (!(score <= MAX_EXPOSURE)) failed = true;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
