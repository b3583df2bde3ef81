/**
 * The packaged agent (npm run build:agent) runs on a machine with no Node and no node_modules.
 *
 * The build goes to a temp dir; its folder is copied to an empty "device" dir under the temp
 * root, with no node_modules in any parent, and run with a PATH that holds only a shell and
 * a few tools (no `node`) and with NODE_* variables cleared. Results are compared with the
 * same commands run through `node agent/bin/upfleet-agent` (the npx path), since both run the
 * same CLI module.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { addTarget, initRepository, startImageRepoServer, type ImageRepoServer } from '../../image-repo/src/index.ts';
import { initDirector, startDirector, type RunningDirector } from '../../director/src/index.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const ADDONS = ['better_sqlite3.node', 'serialport_bindings_cpp.node'];
/** What an install handler on the device may use; never node. */
const DEVICE_TOOLS = ['sh', 'cat', 'cp', 'mkdir', 'rm', 'mv', 'sync'];

interface BuildRecord {
  out: string;
  executableBytes: number;
  folderBytes: number;
  addons: Record<string, { from: string; bytes: number }>;
  absentOptionalModules: string[];
}

let tmp: string;
let build: BuildRecord;
let device: string;
let deviceBin: string;

/** Runs the packaged executable from the device dir with a device-like environment. */
function runPackaged(args: string[], env: Record<string, string> = {}, cwd = device): SpawnSyncReturns<string> {
  return spawnSync(join(device, 'upfleet-agent'), args, {
    cwd, encoding: 'utf8', timeout: 30_000,
    env: { PATH: deviceBin, HOME: device, ...env },
  });
}

/** Runs the same command the way `npx upfleet-agent` does. */
function runNpx(args: string[], env: Record<string, string> = {}, cwd = device): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [join(root, 'agent/bin/upfleet-agent'), ...args], {
    cwd, encoding: 'utf8', timeout: 30_000,
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

  it('prints the same --help as npx upfleet-agent', () => {
    const packaged = runPackaged(['--help']);
    assert.equal(packaged.status, 0, packaged.stderr);
    assert.equal(packaged.stderr, '', 'no warning from Node about the single executable');
    assert.match(packaged.stdout, /Usage: upfleet-agent <command>/);
    assert.equal(packaged.stdout, runNpx(['--help']).stdout);
  });

  it('refuses bad arguments with exit code 2, as npx upfleet-agent does', () => {
    const packaged = runPackaged(['status', '--no-such-flag']);
    assert.equal(packaged.status, 2);
    assert.equal(packaged.stderr, runNpx(['status', '--no-such-flag']).stderr);
  });

  it('reports status on a fresh storage dir, honouring config file, env and flags like npx upfleet-agent', () => {
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

describe('the packaged executable, a full update cycle against the director and image repository on loopback', () => {
  const PASSPHRASE = 'packaging-test-passphrase';
  const ADMIN_TOKEN = 'packaging-admin-token';
  const PROVISIONING_TOKEN = 'packaging-provisioning-token';
  const image = randomBytes(64 * 1024);
  const silent = pino({ level: 'silent' });
  let stack: string;
  let imageRepo: ImageRepoServer;
  let director: RunningDirector;
  let config: string;
  let deviceEnv: Record<string, string>;

  /** Runs the packaged agent without blocking the event loop (the servers are in this process). */
  function runAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(join(device, 'upfleet-agent'), args, { cwd: device, env: { PATH: deviceBin, HOME: device, ...deviceEnv } });
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

  async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const res = await fetch(`${director.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: await res.json() };
  }

  before(async () => {
    stack = mkdtempSync(join(tmp, 'stack-'));
    const repoDir = join(stack, 'image-repo');
    initRepository({ dir: repoDir, passphrase: PASSPHRASE });
    const firmware = join(stack, 'gw-2.0.bin');
    writeFileSync(firmware, image);
    await addTarget({ dir: repoDir, passphrase: PASSPHRASE }, { file: firmware, name: 'gw.bin', hardwareIds: ['gw'], version: '2.0', releaseCounter: 2 });
    imageRepo = await startImageRepoServer({ dir: repoDir, token: 'upload-token', passphrase: PASSPHRASE, logger: silent });
    const imageRoot = readFileSync(join(repoDir, 'metadata', '1.root.json'));

    const directorDir = join(stack, 'director');
    await initDirector({ dir: directorDir, passphrase: PASSPHRASE, onlinePassphrase: PASSPHRASE });
    director = await startDirector({
      dir: directorDir, port: 0, imageRepoUrl: imageRepo.url, imageRepoRoot: imageRoot, mqtt: 'none',
      adminToken: ADMIN_TOKEN, provisioningToken: PROVISIONING_TOKEN, onlinePassphrase: PASSPHRASE, logger: silent,
    });

    // What an integrator puts on the device: the pinned roots, a config, an install handler.
    const etc = join(stack, 'etc');
    mkdirSync(etc);
    writeFileSync(join(etc, 'director-root.json'), readFileSync(join(directorDir, 'metadata', '1.root.json')));
    writeFileSync(join(etc, 'image-root.json'), imageRoot);
    const handler = join(etc, 'install-handler');
    writeFileSync(handler, `#!/bin/sh\necho "$UPFLEET_PHASE $UPFLEET_SLOT" >> "${stack}/handler.log"\n[ "$UPFLEET_PHASE" != install ] || cp "$1" "${stack}/slot-$UPFLEET_SLOT"\n`);
    chmodSync(handler, 0o755);
    config = writeConfig(etc, {
      deviceId: 'packaged-1',
      directorUrl: director.url,
      imageRepoUrl: imageRepo.url,
      storageDir: join(stack, 'var'),
      keyPath: join(stack, 'var', 'primary.key'),
      limits: { minBytesPerSecond: 0 },
      ecus: { primary: { serial: 'packaged-gw-1', hardwareId: 'gw', installCommand: handler }, secondaries: [] },
    });
    deviceEnv = { UPFLEET_CONFIG: config, UPFLEET_KEY_PASSPHRASE: 'device-key-passphrase', UPFLEET_PROVISIONING_TOKEN: PROVISIONING_TOKEN };
  });

  after(async () => {
    await director?.close();
    await imageRepo?.close();
  });

  it('provisions, checks, installs an assigned image and reports it to the director', async () => {
    const provision = await runAsync(['provision', '--json']);
    assert.equal(provision.status, 0, provision.stderr);
    assert.equal(JSON.parse(provision.stdout).status, 'active');

    const idle = await runAsync(['check', '--once', '--json']);
    assert.equal(idle.status, 0, idle.stderr);
    assert.equal(JSON.parse(idle.stdout).result, 'noUpdate');

    const assigned = await admin('POST', '/api/v1/admin/devices/packaged-1/assignments', { ecus: [{ ecuSerial: 'packaged-gw-1', image: 'gw.bin' }] });
    assert.equal(assigned.status, 201, JSON.stringify(assigned.body));

    const startedAt = Date.now();
    const update = await runAsync(['check', '--once', '--json']);
    assert.equal(update.status, 0, update.stderr);
    assert.equal(JSON.parse(update.stdout).result, 'success', update.stdout);
    assert.deepEqual(readFileSync(join(stack, 'slot-b')), image);
    assert.deepEqual(readFileSync(join(stack, 'handler.log'), 'utf8').trim().split('\n'), ['install b', 'activate b', 'health b', 'commit b']);

    const view = await admin('GET', '/api/v1/admin/devices/packaged-1');
    assert.equal(view.body.ecus.find((e: { serial: string }) => e.serial === 'packaged-gw-1').installed.filename, 'gw.bin');
    assert.deepEqual(view.body.assignments.map((a: { status: string }) => a.status), ['succeeded']);

    const status = await runAsync(['status', '--json']);
    assert.equal(status.status, 0, status.stderr);
    const s = JSON.parse(status.stdout) as { ecus: { serial: string; installed: { filename: string } | null; releaseCounter: number }[]; lastCycle: { at: string; result: string } };
    assert.equal(s.ecus[0]!.installed!.filename, 'gw.bin');
    assert.equal(s.ecus[0]!.releaseCounter, 2);
    assert.equal(s.lastCycle.result, 'success');
    // The executable reads the system clock when it runs (nothing frozen at build time).
    const at = Date.parse(s.lastCycle.at);
    assert.ok(at >= startedAt - 1000 && at <= Date.now() + 1000, `last cycle at ${s.lastCycle.at}`);
  });
});
