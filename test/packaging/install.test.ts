/**
 * The documented install (README "Install the tools": `npm ci`, then `npm install -g .` in the
 * checkout), done into a temporary prefix, and then every command the READMEs show, run by
 * its installed name from a fresh directory outside the checkout, with only the prefix's bin/
 * and Node's directory on PATH: an image repository, a director, a simulated secondary ECU on
 * a pty pair, an agent that provisions and updates (an assignment, then a campaign), and the
 * fleet simulator.
 *
 * The install is offline and links the checkout (no copy, no native rebuild): it takes a few
 * seconds. The checkout's own node_modules/.bin is not on PATH, so `npx` could not be
 * what finds the commands.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cliCommand } from '../../scripts/cli-command.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ROOT_PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
const CLIS = ['upfleet-repo', 'upfleet-director', 'upfleet-agent', 'upfleet-sim'];

const PASSPHRASE = 'offline passphrase for the install test';
const ONLINE_PASSPHRASE = 'online passphrase for the install test';
const REPO_TOKEN = 'repo-upload-token';
const ADMIN_TOKEN = 'admin-token';
const PROVISIONING_TOKEN = 'provisioning-token';
const KEY_PASSPHRASE = 'agent key passphrase';

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface Background {
  child: ChildProcess;
  out: () => string;
  /** Resolves with the first stdout match of `pattern`; rejects when the process exits first or after `ms`. */
  waitFor: (pattern: RegExp, ms?: number) => Promise<RegExpExecArray>;
  stop: () => Promise<void>;
}

let tmp: string;
let prefix: string;
let work: string;
let env: Record<string, string>;
const running: Background[] = [];

/** The environment of a user's shell: no npm_* variables, no UPFLEET_* settings, PATH without the checkout. */
function userEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k.startsWith('npm_') || k.startsWith('UPFLEET_') || k === 'PATH' || k === 'NODE_OPTIONS') continue;
    out[k] = v;
  }
  out.PATH = [join(prefix, 'bin'), dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin'].join(':');
  out.UPFLEET_LOG_LEVEL = 'warn';
  return out;
}

function start(command: string, args: string[], extraEnv: Record<string, string> = {}): Background {
  const child = spawn(command, args, { cwd: work, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const bg: Background = {
    child,
    out: () => stdout,
    waitFor: async (pattern, ms = 60_000) => {
      const end = Date.now() + ms;
      for (;;) {
        const m = pattern.exec(stdout);
        if (m) return m;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${command} exited (${child.exitCode ?? child.signalCode}) before ${pattern}:\n${stdout}\n${stderr}`);
        if (Date.now() > end) throw new Error(`${command}: no ${pattern} within ${ms} ms:\n${stdout}\n${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  running.push(bg);
  return bg;
}

function run(command: string, args: string[], extraEnv: Record<string, string> = {}): Promise<Exit> {
  const child = spawn(command, args, { cwd: work, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs a command that must succeed; returns its stdout. */
async function ok(command: string, args: string[], extraEnv: Record<string, string> = {}): Promise<string> {
  const r = await run(command, args, extraEnv);
  assert.equal(r.code, 0, `${command} ${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/**
 * `npm <command> -g <spec>` into the temporary prefix; offline and with a private npm cache,
 * so it can neither reach a registry nor touch the user's global install.
 */
function npmGlobal(command: 'install' | 'uninstall', spec: string): Promise<Exit> {
  return run('npm', [command, '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', '--cache', join(tmp, 'npm-cache'), spec],
    { PATH: `${dirname(process.execPath)}:${process.env.PATH}` });
}

before(async () => {
  const tools = (await import('../../scripts/system-tools.mjs' as string)) as { ensureSystemTools(o?: { quiet?: boolean }): string[] };
  assert.deepEqual(tools.ensureSystemTools({ quiet: true }), [], 'socat is needed for upfleet-sim pty-pair');
  tmp = realpathSync(mkdtempSync(join(tmpdir(), 'upfleet-install-')));
  prefix = join(tmp, 'prefix');
  work = join(tmp, 'work');
  mkdirSync(work);
  env = userEnv();
  // The documented `npm install -g .`, into a temporary prefix.
  const install = await npmGlobal('install', ROOT);
  assert.equal(install.code, 0, install.stderr);
});

after(async () => {
  for (const bg of running.reverse()) await bg.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('npm install -g . (the documented install)', () => {
  it('puts every CLI the root package.json declares on PATH, and those are the four tools', () => {
    assert.deepEqual(Object.keys(ROOT_PACKAGE.bin).sort(), [...CLIS].sort());
    for (const bin of CLIS) assert.ok(existsSync(join(prefix, 'bin', bin)), bin);
  });

  it('command lines printed for the user (the demo) name the installed command, else the checkout\'s bin file', () => {
    assert.equal(cliCommand('upfleet-repo', env.PATH), 'upfleet-repo');
    // node_modules/.bin of the checkout is what `npm run` adds, not what the user's shell has.
    const outside = `${join(ROOT, 'node_modules', '.bin')}:/usr/bin:/bin`;
    assert.equal(cliCommand('upfleet-repo', outside), join(ROOT, 'image-repo', 'bin', 'upfleet-repo'));
  });

  it('--version and --help of each command answer from any directory', async () => {
    await Promise.all(CLIS.map(async (bin) => {
      const [version, help] = await Promise.all([ok(bin, ['--version']), ok(bin, ['--help'])]);
      assert.match(version, new RegExp(`^${bin} \\d+\\.\\d+\\.\\d+\\n$`));
      assert.match(help, new RegExp(`${bin} `), bin);
    }));
  });

  it('runs the READMEs\' commands by their installed names: publish, serve, provision, assign, campaign, update', { timeout: 240_000 }, async () => {
    const offline = { UPFLEET_PASSPHRASE: PASSPHRASE };
    const directorKeys = { UPFLEET_PASSPHRASE: PASSPHRASE, UPFLEET_ONLINE_PASSPHRASE: ONLINE_PASSPHRASE };

    // Image repository (image-repo/README.md, Quick start) and director keys (director/README.md,
    // Keys and start-up): independent, so side by side.
    await Promise.all([
      ok('upfleet-repo', ['init', '--dir', 'repo'], offline),
      ok('upfleet-repo', ['keygen', '--out', 'acme.key.json'], offline),
      ok('upfleet-director', ['init', '--dir', './director-data'], directorKeys),
    ]);
    await ok('upfleet-repo', ['delegate', 'acme', '--dir', 'repo', '--paths', 'acme/*', '--hardware-id', 'camera', '--key', 'acme.key.json', '--threshold', '1'], offline);
    writeFileSync(join(work, 'gw.bin'), Buffer.alloc(20_000, 7));
    writeFileSync(join(work, 'cam.bin'), Buffer.alloc(6_000, 9));
    await ok('upfleet-repo', ['add-target', 'gw.bin', '--dir', 'repo', '--name', 'gw-2.1.0.bin', '--hardware-id', 'gateway', '--version', '2.1.0'], offline);
    const repo = start('upfleet-repo', ['serve', '--dir', 'repo', '--port', '0'], { UPFLEET_REPO_TOKEN: REPO_TOKEN });
    const repoUrl = (await repo.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+)"/))[1]!;
    await ok('upfleet-repo', ['sign-delegated', 'acme', '--dir', 'acme-dir', '--remote', repoUrl, '--token', REPO_TOKEN,
      '--key', 'acme.key.json', '--add', 'cam.bin', '--name', 'acme/cam-3.1.bin', '--hardware-id', 'camera', '--version', '3.1.0'], offline);
    const [remoteStatus, localStatus] = await Promise.all([
      ok('upfleet-repo', ['status', '--dir', 'repo', '--remote', repoUrl, '--json'], offline),
      ok('upfleet-repo', ['status', '--dir', 'repo'], offline),
    ]);
    assert.match(JSON.stringify(JSON.parse(remoteStatus)), /acme\/cam-3\.1\.bin/);
    assert.match(localStatus, /gw-2\.1\.0\.bin/);

    // The director (director/README.md, Keys and start-up; CLI).
    const director = start('upfleet-director', ['serve', '--dir', './director-data', '--port', '0', '--image-repo', repoUrl, '--mqtt-port', '0',
      '--admin-token', ADMIN_TOKEN, '--provisioning-token', PROVISIONING_TOKEN], { ...directorKeys, UPFLEET_LOG_LEVEL: 'info' });
    const directorUrl = (await director.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+)"/))[1]!;
    const admin = { UPFLEET_DIRECTOR_URL: directorUrl, UPFLEET_ADMIN_TOKEN: ADMIN_TOKEN };

    // A simulated secondary on a pty pair (root README: upfleet-sim).
    const pty = start('upfleet-sim', ['pty-pair', '--dir', work, '--json']);
    const ports = JSON.parse((await pty.waitFor(/^\{.*\}$/m))[0]) as { a: string; b: string };
    writeFileSync(join(work, 'ecu.json'), JSON.stringify({ ecuSerial: 'car-1-cam', hardwareId: 'camera', verification: 'partial', key: 'cam.key',
      directorRoot: 'director-data/metadata/1.root.json', stateDir: 'cam-state', rebootMs: 100 }));
    const ecu = start('upfleet-sim', ['ecu', '--port', ports.a, '--config', 'ecu.json']);
    await ecu.waitFor(/"serving"/);

    // The agent (agent/README.md): provision, check --once, status.
    const install = join(work, 'install-rootfs');
    writeFileSync(install, '#!/bin/sh\nmkdir -p slots && [ "$UPFLEET_PHASE" != install ] || cp "$1" "slots/$UPFLEET_SLOT"\n');
    chmodSync(install, 0o755);
    writeFileSync(join(work, 'agent.json'), JSON.stringify({
      deviceId: 'car-1', directorUrl, imageRepoUrl: repoUrl, storageDir: join(work, 'agent-state'), pollIntervalSeconds: 300,
      provisioning: { directorRoot: join(work, 'director-data/metadata/1.root.json'), imageRepoRoot: join(work, 'repo/metadata/1.root.json'), token: PROVISIONING_TOKEN },
      ecus: {
        primary: { serial: 'car-1-gw', hardwareId: 'gateway', installCommand: install },
        secondaries: [{ serial: 'car-1-cam', hardwareId: 'camera', port: ports.b, baud: 115200, verification: 'partial' }],
      },
    }));
    const agentEnv = { UPFLEET_KEY_PASSPHRASE: KEY_PASSPHRASE };
    assert.match(await ok('upfleet-agent', ['provision', '--config', 'agent.json'], agentEnv), /provisioned car-1/);
    await director.waitFor(/"msg":"device registered"/);

    assert.match(await ok('upfleet-director', ['devices', 'list'], admin), /car-1/);
    await ok('upfleet-director', ['assign', 'car-1', '--ecu', 'car-1-cam', '--image', 'acme/cam-3.1.bin'], admin);
    await ok('upfleet-agent', ['check', '--once', '--config', 'agent.json'], agentEnv);
    const afterAssign = JSON.parse(await ok('upfleet-agent', ['status', '--json', '--config', 'agent.json'], agentEnv)) as { ecus: Array<{ serial: string; installed?: { filename: string } | null }> };
    assert.equal(afterAssign.ecus.find((e) => e.serial === 'car-1-cam')?.installed?.filename, 'acme/cam-3.1.bin', JSON.stringify(afterAssign));

    const created = JSON.parse(await ok('upfleet-director', ['campaign', 'create', '--name', 'gateways', '--image', 'gateway=gw-2.1.0.bin', '--json'], admin)) as { id: string };
    await ok('upfleet-director', ['campaign', 'start', created.id], admin);
    await ok('upfleet-agent', ['check', '--once', '--config', 'agent.json'], agentEnv);
    const [campaignStatus, shown, campaigns] = await Promise.all([
      ok('upfleet-director', ['campaign', 'status', created.id, '--json'], admin),
      ok('upfleet-director', ['devices', 'show', 'car-1'], admin),
      ok('upfleet-director', ['campaign', 'list'], admin),
    ]);
    const campaign = JSON.parse(campaignStatus) as { counts: Record<string, number> };
    assert.equal(campaign.counts.succeeded, 1, campaignStatus);
    assert.deepEqual(readFileSync(join(work, 'slots', 'b')), readFileSync(join(work, 'gw.bin')), 'the install handler wrote the gateway image');
    assert.match(shown, /acme\/cam-3\.1\.bin/);
    assert.match(campaigns, /gateways/);

    // The daemon: status is then answered by it over its control socket.
    const daemon = start('upfleet-agent', ['run', '--config', 'agent.json'], agentEnv);
    const socket = join(work, 'agent-state', 'agent.sock');
    for (let i = 0; i < 600 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(socket), `the daemon made no control socket:\n${daemon.out()}`);
    const viaDaemon = JSON.parse(await ok('upfleet-agent', ['status', '--json', '--config', 'agent.json'], agentEnv)) as { ecus: Array<{ serial: string; installed?: { filename: string } | null }> };
    assert.equal(viaDaemon.ecus.find((e) => e.serial === 'car-1-gw')?.installed?.filename, 'gw-2.1.0.bin');
    await daemon.stop();
    assert.equal(daemon.child.exitCode, 0, daemon.out());

    // The fleet simulator registers its own vehicle against the same servers.
    const fleet = start('upfleet-sim', ['fleet', '--devices', '1', '--ecus', '1', '--director', directorUrl, '--image-repo', repoUrl,
      '--director-root', 'director-data/metadata/1.root.json', '--prefix', 'sim-car', '--dir', 'fleet-state', '--interval', '1'], { UPFLEET_PROVISIONING_TOKEN: PROVISIONING_TOKEN });
    await fleet.waitFor(/"devices":1/);
    assert.match(await ok('upfleet-director', ['devices', 'show', 'sim-car-1'], admin), /sim-car-1/);
  });

  it('npm uninstall -g upfleet removes the commands and leaves the checkout', async () => {
    const r = await npmGlobal('uninstall', 'upfleet');
    assert.equal(r.code, 0, r.stderr);
    for (const bin of CLIS) assert.ok(!existsSync(join(prefix, 'bin', bin)), bin);
    assert.ok(existsSync(join(ROOT, 'package.json')));
  });
});
