/**
 * The packaged agent (npm run build:agent) runs on a machine with no Node and no node_modules.
 *
 * The build goes to a temp dir; its folder is copied to an empty "device" dir under the temp
 * root, with no node_modules in any parent, and run with a PATH that holds only a shell and
 * a few tools (no `node`) and with NODE_* variables cleared. Results are compared with the
 * same commands run through `node agent/bin/upfleet-agent` (the command of the checkout), since both run the
 * same CLI module.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { realWorld, type RealWorld } from '../../agent/src/testing/real-world.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const ADDONS = ['better_sqlite3.node', 'serialport_bindings_cpp.node'];
/** What an install handler on the device may use; never node. */
const DEVICE_TOOLS = ['sh', 'cat', 'cp', 'mkdir', 'rm', 'mv', 'sync'];

interface BuildRecord {
  out: string;
  executableBytes: number;
  folderBytes: number;
  addons: Record<string, { from: string; bytes: number }>;
}

let tmp: string;
let build: BuildRecord;
let device: string;
let deviceBin: string;

/** Runs the packaged executable from the device dir with a device-like environment. */
function runPackaged(args: string[], env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync(join(device, 'upfleet-agent'), args, {
    cwd: device, encoding: 'utf8', timeout: 30_000,
    env: { PATH: deviceBin, HOME: device, ...env },
  });
}

/** Runs the same command the way `agent/bin/upfleet-agent` does. */
function runNpx(args: string[], env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [join(root, 'agent/bin/upfleet-agent'), ...args], {
    cwd: device, encoding: 'utf8', timeout: 30_000,
    env: { PATH: process.env.PATH ?? '', HOME: device, ...env },
  });
}

before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'upfleet-packaging-'));
  const built = spawnSync('npm', ['run', '--silent', 'build:agent', '--', '--json', '--out', join(tmp, 'build')], {
    cwd: root, encoding: 'utf8', timeout: 120_000,
  });
  assert.equal(built.status, 0, `build failed: ${built.stderr}`);
  build = JSON.parse(built.stdout.trim().split('\n').pop()!) as BuildRecord;

  device = join(tmp, 'device');
  cpSync(build.out, device, { recursive: true });
  deviceBin = join(tmp, 'device-bin');
  mkdirSync(deviceBin);
  for (const tool of DEVICE_TOOLS) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    symlinkSync(found, join(deviceBin, tool));
  }
});

after(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('the packaged folder', () => {
  it('holds the executable and exactly the native addons', () => {
    assert.deepEqual(readdirSync(device).sort(), [...ADDONS, 'upfleet-agent'].sort());
    assert.deepEqual(Object.keys(build.addons).sort(), ADDONS);
    assert.ok(build.executableBytes > 10_000_000, `executable is ${build.executableBytes} bytes`);
  });

  it('sits where no node and no node_modules can be reached', () => {
    for (let dir = device; dir !== dirname(dir); dir = dirname(dir)) {
      assert.ok(!existsSync(join(dir, 'node_modules')), `${dir}/node_modules exists`);
    }
    const which = spawnSync('sh', ['-c', 'command -v node'], { env: { PATH: deviceBin }, encoding: 'utf8' });
    assert.notEqual(which.status, 0, `node found on the device PATH: ${which.stdout}`);
  });
});

/** A config file whose values the env and flags of each run override. */
function writeConfig(dir: string, values: Record<string, unknown>): string {
  const file = join(dir, 'agent.json');
  writeFileSync(file, JSON.stringify({
    deviceId: 'from-file',
    directorUrl: 'http://127.0.0.1:9',
    imageRepoUrl: 'http://127.0.0.1:9',
    storageDir: join(dir, 'var-from-file'),
    keyPath: join(dir, 'primary.key'),
    provisioning: { directorRoot: join(dir, 'director-root.json'), imageRepoRoot: join(dir, 'image-root.json') },
    ecus: { primary: { serial: 'gw-1', hardwareId: 'gw', installCommand: 'false' }, secondaries: [] },
    ...values,
  }));
  return file;
}

describe('the packaged executable, alone', () => {
  let config: string;
  before(() => {
    config = writeConfig(mkdtempSync(join(tmp, 'alone-')), {});
  });

  it('prints the same --help as agent/bin/upfleet-agent', () => {
    const packaged = runPackaged(['--help']);
    assert.equal(packaged.status, 0, packaged.stderr);
    assert.equal(packaged.stderr, '', 'no warning from Node about the single executable');
    assert.match(packaged.stdout, /Usage: upfleet-agent <command>/);
    assert.equal(packaged.stdout, runNpx(['--help']).stdout);
  });

  it('refuses bad arguments with exit code 2, as agent/bin/upfleet-agent does', () => {
    const packaged = runPackaged(['status', '--no-such-flag']);
    assert.equal(packaged.status, 2);
    assert.equal(packaged.stderr, runNpx(['status', '--no-such-flag']).stderr);
  });

  it('reports status on a fresh storage dir, honouring config file, env and flags like agent/bin/upfleet-agent', () => {
    const storageA = join(tmp, 'alone-storage-packaged');
    const storageB = join(tmp, 'alone-storage-npx');
    const env = { UPFLEET_DEVICE_ID: 'from-env' };
    const packaged = runPackaged(['status', '--json', '--config', config, '--storage-dir', storageA], env);
    assert.equal(packaged.status, 0, packaged.stderr);
    const status = JSON.parse(packaged.stdout) as { deviceId: string; provisioned: boolean; state: string; ecus: { serial: string }[] };
    assert.equal(status.deviceId, 'from-env');
    assert.equal(status.provisioned, false);
    assert.equal(status.state, 'idle');
    assert.deepEqual(status.ecus.map((e) => e.serial), ['gw-1']);
    assert.ok(existsSync(join(storageA, 'agent.db')), 'the --storage-dir flag chose where the database went');
    assert.ok(!existsSync(join(dirname(config), 'var-from-file')));

    const npx = runNpx(['status', '--json', '--config', config, '--storage-dir', storageB], env);
    assert.equal(npx.status, 0, npx.stderr);
    assert.deepEqual(JSON.parse(npx.stdout), status);
  });

  it('finds its addons beside its real path when started through a symlink', () => {
    const elsewhere = join(tmp, 'usr-bin');
    mkdirSync(elsewhere);
    symlinkSync(join(device, 'upfleet-agent'), join(elsewhere, 'upfleet-agent'));
    const storage = join(tmp, 'alone-storage-symlink');
    const run = spawnSync(join(elsewhere, 'upfleet-agent'), ['status', '--json', '--config', config, '--storage-dir', storage], {
      cwd: elsewhere, encoding: 'utf8', timeout: 30_000, env: { PATH: deviceBin, HOME: elsewhere },
    });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(JSON.parse(run.stdout).deviceId, 'from-file');
    assert.ok(existsSync(join(storage, 'agent.db')));
  });

  it('loads its native addons from beside the executable, and fails plainly without one', () => {
    const broken = join(tmp, 'device-without-sqlite');
    cpSync(device, broken, { recursive: true });
    rmSync(join(broken, 'better_sqlite3.node'));
    const run = spawnSync(join(broken, 'upfleet-agent'), ['status', '--config', config, '--storage-dir', join(tmp, 'alone-storage-broken')], {
      cwd: broken, encoding: 'utf8', timeout: 30_000, env: { PATH: deviceBin, HOME: broken },
    });
    assert.equal(run.status, 1);
    assert.ok(run.stderr.includes(join(broken, 'better_sqlite3.node')), run.stderr);
  });
});

describe('the packaged executable, a full update cycle against the director, the image repository and a serial secondary', () => {
  const data = { 'gateway-2.bin': randomBytes(64 * 1024), 'brake-2.bin': randomBytes(16 * 1024) };
  let w: RealWorld;

  /** Runs the packaged agent without blocking the event loop (the servers and the ECU are in this process). */
  function runAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(join(device, 'upfleet-agent'), args, {
        cwd: device, env: { PATH: deviceBin, HOME: device, UPFLEET_CONFIG: w.configPath },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.once('error', reject);
      child.once('close', (status) => {
        clearTimeout(timer);
        resolve({ status, stdout, stderr });
      });
    });
  }

  before(async () => {
    // The real image repository and director (their programmatic APIs) on 127.0.0.1, a simulated
    // brake ECU behind a pty pair, and the agent config, pinned roots and install handler.
    w = await realWorld({ deviceId: 'packaged-1', secondaries: [{ serial: 'brake-1', hardwareId: 'brake', verification: 'partial' }] });
  });

  after(async () => {
    await w?.close();
  });

  it('provisions, checks, installs the assigned images on the primary and over serial, and reports them', async () => {
    const provision = await runAsync(['provision', '--json']);
    assert.equal(provision.status, 0, provision.stderr);
    assert.equal(JSON.parse(provision.stdout).status, 'active');

    const idle = await runAsync(['check', '--once', '--json']);
    assert.equal(idle.status, 0, idle.stderr);
    assert.equal(JSON.parse(idle.stdout).result, 'noUpdate');

    await w.publish([
      { name: 'gateway-2.bin', data: data['gateway-2.bin'], hardwareIds: ['gateway'], releaseCounter: 2 },
      { name: 'brake-2.bin', data: data['brake-2.bin'], hardwareIds: ['brake'], releaseCounter: 2 },
    ]);
    const assigned = await w.admin('POST', '/api/v1/admin/devices/packaged-1/assignments', {
      ecus: [{ ecuSerial: 'primary-1', image: 'gateway-2.bin' }, { ecuSerial: 'brake-1', image: 'brake-2.bin' }],
    });
    assert.equal(assigned.status, 201, JSON.stringify(assigned.json));

    const startedAt = Date.now();
    const update = await runAsync(['check', '--once', '--json']);
    assert.equal(update.status, 0, update.stderr);
    assert.equal(JSON.parse(update.stdout).result, 'success', update.stdout);
    assert.deepEqual(readFileSync(join(w.dir, 'slot-b')), data['gateway-2.bin']);
    assert.equal(w.secondaries[0]!.sim.info.installed?.filename, 'brake-2.bin');

    const view = await w.device();
    const installed = Object.fromEntries(view.ecus.map((e: { serial: string; installed: { filename: string } | null }) => [e.serial, e.installed?.filename]));
    assert.deepEqual(installed, { 'primary-1': 'gateway-2.bin', 'brake-1': 'brake-2.bin' });
    assert.equal(view.assignments.at(-1).status, 'succeeded');

    const status = await runAsync(['status', '--json']);
    assert.equal(status.status, 0, status.stderr);
    const s = JSON.parse(status.stdout) as { ecus: { serial: string; installed: { filename: string } | null }[]; lastCycle: { at: string; result: string } };
    assert.deepEqual(s.ecus.map((e) => [e.serial, e.installed?.filename]), [['primary-1', 'gateway-2.bin'], ['brake-1', 'brake-2.bin']]);
    assert.equal(s.lastCycle.result, 'success');
    // The executable reads the system clock when it runs (nothing frozen at build time).
    const at = Date.parse(s.lastCycle.at);
    assert.ok(at >= startedAt - 1000 && at <= Date.now() + 1000, `last cycle at ${s.lastCycle.at}`);
  });
});

describe('build:agent refusals (nothing is written)', () => {
  const foreign = process.arch === 'x64' ? 'arm64' : 'x64';
  function buildWith(args: string[]): { status: number | null; stderr: string; out: string } {
    const out = join(tmp, `refused-${args.join('_').replace(/[^A-Za-z0-9_-]/g, '')}`);
    const run = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/build-agent.ts'), '--out', out, ...args], {
      cwd: root, encoding: 'utf8', timeout: 60_000,
    });
    return { status: run.status, stderr: run.stderr, out };
  }

  it('wants a Node binary for a foreign arch', () => {
    const r = buildWith(['--arch', foreign]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`AgentBuildError: node: no Node binary for linux-${foreign}`));
    assert.ok(!existsSync(r.out));
  });

  it('refuses a base binary for another CPU', () => {
    const r = buildWith(['--arch', foreign, '--node', process.execPath]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`is for ELF machine 0x[0-9a-f]+, not linux-${foreign}`));
    assert.ok(!existsSync(r.out));
  });

  it('refuses a base binary that is not the same Node version', () => {
    const r = buildWith(['--node', '/bin/sh']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`is not Node ${process.version.replace(/\./g, '\\.')}`));
    assert.ok(!existsSync(r.out));
  });

  it('refuses an unknown arch or addon with exit code 2', () => {
    assert.equal(buildWith(['--arch', 'mips']).status, 2);
    assert.equal(buildWith(['--addon', 'other.node=/tmp/x']).status, 2);
  });
});
