/**
 * The VM test's artifacts, built once and cached (docs/vm-test.md):
 *
 *   <cache>/base-<key>.tar   the Debian base (build-base.sh, mmdebstrap); key: the
 *                            script and the mirror
 *   <cache>/disk-<key>/      disk.img, the RAUC bundles, layout.json (build-disk.sh);
 *                            key: the base key, build-disk.sh, scripts/vm/guest/*, the
 *                            agent's units from meta-upfleet and the agent's sources
 *
 * The agent's single-file build is not byte-reproducible (its V8 code cache differs
 * between builds), so the disk key hashes the agent's inputs instead of its output,
 * and the agent is built only when the disk is. Older entries are removed.
 *
 * Invariants:
 * - An entry exists only when its build finished: each is built under a temporary
 *   name and renamed into place.
 * - Everything runs as root (mmdebstrap, chroot, file ownership in the images).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { buildAgent } from '../build-agent.ts';

const REPO = join(import.meta.dirname, '..', '..');
const HERE = import.meta.dirname;

export const DEFAULT_CACHE_DIR = '/var/tmp/upfleet-vm';

export interface Layout {
  partitions: Record<'boot' | 'rootfs.0' | 'rootfs.1' | 'data', [offset: number, bytes: number]>;
  rootfsImageBytes: number;
  rootfsUsedMiB: number;
  upfleetUid: number;
}

export interface VmImage {
  dir: string;
  disk: string;
  bundles: { v2: string; v3Unhealthy: string; v4: string };
  layout: Layout;
  /** Seconds each step took in this run; absent when it came from the cache. */
  built: { baseSeconds?: number; agentSeconds?: number; diskSeconds?: number };
}

export class VmImageError extends Error {
  override name = 'VmImageError';
}

/** The Debian mirror this machine's apt uses (deb822 or one-line sources), else deb.debian.org. */
export function debianMirror(): string {
  const files = ['/etc/apt/sources.list', ...listDir('/etc/apt/sources.list.d').map((f) => join('/etc/apt/sources.list.d', f))];
  for (const file of files) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    for (const block of text.split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(block)?.[1];
      if (uri && /^Suites:.*\bbookworm\b/m.test(block) && /\/debian\/?$/.test(uri)) return uri.replace(/\/$/, '');
    }
    for (const line of text.split('\n')) {
      const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s+bookworm\s/.exec(line.trim());
      if (m) return m[1]!;
    }
  }
  return 'http://deb.debian.org/debian';
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** Every file under `dir` (sorted), skipping tests and node_modules. */
function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  if (statSync(dir).isFile()) return [dir];
  const out: string[] = [];
  for (const name of listDir(dir)) {
    if (name === 'node_modules' || name.endsWith('.test.ts')) continue;
    out.push(...sourceFiles(join(dir, name)));
  }
  return out;
}

function hashFiles(parts: string[], files: string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  for (const f of files) h.update(relative(REPO, f)).update('\0').update(readFileSync(f)).update('\0');
  return h.digest('hex').slice(0, 16);
}

function run(command: string, args: string[], log: (line: string) => void): void {
  log(`$ ${command} ${args.join(' ')}`);
  const r = spawnSync(command, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new VmImageError(`${command} failed (${r.signal ?? `exit ${r.status}`})`);
}

function removeStale(cache: string, prefix: string, keep: string): void {
  for (const name of listDir(cache)) if (name.startsWith(prefix) && name !== keep) rmSync(join(cache, name), { recursive: true, force: true });
}

/**
 * The cached disk image and bundles, building what is missing.
 * @throws VmImageError when a build step fails
 */
export async function ensureVmImage(options: { cacheDir?: string; log?: (line: string) => void } = {}): Promise<VmImage> {
  const log = options.log ?? ((line: string) => console.error(line));
  const cache = options.cacheDir ?? process.env.UPFLEET_VM_CACHE ?? DEFAULT_CACHE_DIR;
  mkdirSync(cache, { recursive: true });
  const built: VmImage['built'] = {};

  const mirror = debianMirror();
  const baseKey = hashFiles([mirror], [join(HERE, 'build-base.sh')]);
  const baseName = `base-${baseKey}.tar`;
  const base = join(cache, baseName);
  if (!existsSync(base)) {
    removeStale(cache, 'base-', baseName);
    log(`building the Debian base (mmdebstrap from ${mirror}); this takes minutes once`);
    const t0 = performance.now();
    run(join(HERE, 'build-base.sh'), [mirror, `${base}.tmp`], log);
    renameSync(`${base}.tmp`, base);
    built.baseSeconds = (performance.now() - t0) / 1000;
  }

  const yocto = join(REPO, 'yocto', 'meta-upfleet', 'recipes-upfleet', 'upfleet-agent', 'files');
  const agentInputs = [
    ...sourceFiles(join(REPO, 'agent', 'src')), join(REPO, 'agent', 'package.json'),
    ...sourceFiles(join(REPO, 'core', 'src')), join(REPO, 'core', 'package.json'),
    join(REPO, 'package-lock.json'), join(REPO, 'scripts', 'build-agent.ts'),
  ];
  const diskKey = hashFiles([baseKey, process.version], [
    join(HERE, 'build-disk.sh'), ...sourceFiles(join(HERE, 'guest')), ...sourceFiles(yocto), ...agentInputs,
  ]);
  const diskName = `disk-${diskKey}`;
  const dir = join(cache, diskName);
  if (!existsSync(dir)) {
    removeStale(cache, 'disk-', diskName);
    const tmp = `${dir}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    log('building the single-file agent (npm run build:agent)');
    const t0 = performance.now();
    const agent = await buildAgent({ arch: process.arch as 'x64', out: join(tmp, 'agent'), strip: true });
    built.agentSeconds = (performance.now() - t0) / 1000;
    log('building the disk image and the RAUC bundles');
    const t1 = performance.now();
    run(join(HERE, 'build-disk.sh'), [base, agent.out, REPO, tmp], log);
    rmSync(agent.out, { recursive: true, force: true });
    renameSync(tmp, dir);
    built.diskSeconds = (performance.now() - t1) / 1000;
    writeFileSync(join(dir, 'built.json'), JSON.stringify({ ...built, at: new Date().toISOString() }) + '\n');
  }
  return {
    dir,
    disk: join(dir, 'disk.img'),
    bundles: { v2: join(dir, 'rootfs-2.0.0.raucb'), v3Unhealthy: join(dir, 'rootfs-3.0.0-unhealthy.raucb'), v4: join(dir, 'rootfs-4.0.0.raucb') },
    layout: JSON.parse(readFileSync(join(dir, 'layout.json'), 'utf8')) as Layout,
    built,
  };
}
