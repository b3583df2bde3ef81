import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './errors.ts';
import { loadConfig, parseConfig } from './config.ts';

const BIN = fileURLToPath(new URL('../bin/upfleet-agent', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'upfleet-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const valid = () => ({
  deviceId: 'car-1',
  directorUrl: 'http://127.0.0.1:8080',
  imageRepoUrl: 'http://127.0.0.1:8081/',
  storageDir: '/var/lib/upfleet',
  keyPath: '/var/lib/upfleet/primary.key',
  pollIntervalSeconds: 60,
  provisioning: { directorRoot: '/etc/upfleet/director-root.json', imageRepoRoot: '/etc/upfleet/image-root.json' },
  ecus: {
    primary: { serial: 'gw-1', hardwareId: 'gw', installCommand: '/usr/bin/install-image' },
    secondaries: [{ serial: 's-1', hardwareId: 'brake', port: '/dev/ttyS1', baud: 115200, verification: 'full' }],
  },
});

/** Replaces the short handler form with an `installer` object. */
function withInstaller(c: ReturnType<typeof valid>, installer: unknown): void {
  const primary = c.ecus.primary as Record<string, unknown>;
  delete primary.installCommand;
  primary.installer = installer;
}

function field(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.field;
  }
  assert.fail('no ConfigError');
}

describe('parseConfig', () => {
  it('accepts the documented shape and fills defaults', () => {
    const c = parseConfig(valid());
    assert.equal(c.imageRepoUrl, 'http://127.0.0.1:8081');
    assert.equal(c.mqttTopicPrefix, 'upfleet/v1');
    assert.equal(c.limits.downloadAttempts, 5);
    assert.deepEqual(c.ecus.primary.installer, { type: 'handler', command: '/usr/bin/install-image', timeoutSeconds: 600 });
    assert.equal(c.ecus.secondaries[0]!.verification, 'full');
  });

  it('takes a RAUC installer with its defaults, or a handler in the long form', () => {
    const c = valid();
    withInstaller(c, { type: 'rauc' });
    assert.deepEqual(parseConfig(c).ecus.primary.installer, { type: 'rauc', rebootCommand: 'systemctl reboot', timeoutSeconds: 1800, rebootTimeoutSeconds: 600 });
    withInstaller(c, { type: 'rauc', rebootCommand: 'touch /run/reboot', healthCheck: '/usr/bin/healthy', timeoutSeconds: 60, rebootTimeoutSeconds: 30 });
    assert.deepEqual(parseConfig(c).ecus.primary.installer, { type: 'rauc', rebootCommand: 'touch /run/reboot', healthCheck: '/usr/bin/healthy', timeoutSeconds: 60, rebootTimeoutSeconds: 30 });
    withInstaller(c, { type: 'handler', command: '/usr/bin/swupdate-handler' });
    assert.deepEqual(parseConfig(c).ecus.primary.installer, { type: 'handler', command: '/usr/bin/swupdate-handler', timeoutSeconds: 600 });
  });

  it('keeps its state in /var/lib/upfleet (the data partition) and the key under it, unless told otherwise', () => {
    const c = valid() as Partial<ReturnType<typeof valid>>;
    delete c.storageDir;
    delete c.keyPath;
    const d = parseConfig(c);
    assert.equal(d.storageDir, '/var/lib/upfleet');
    assert.equal(d.keyPath, '/var/lib/upfleet/keys/primary.key');
    const moved = parseConfig({ ...c, storageDir: '/data/upfleet' });
    assert.equal(moved.keyPath, '/data/upfleet/keys/primary.key');
    assert.equal(parseConfig({ ...c, keyPath: '/data/key' }).keyPath, '/data/key');
    assert.equal(field(() => parseConfig({ ...c, storageDir: '' })), 'storageDir');
  });

  const bad: Array<[string, (c: ReturnType<typeof valid>) => void, string]> = [
    ['a missing device ID', (c) => delete (c as Partial<typeof c>).deviceId, 'deviceId'],
    ['a director URL that is not one', (c) => (c.directorUrl = 'not a url'), 'directorUrl'],
    ['an ftp image repository', (c) => (c.imageRepoUrl = 'ftp://x'), 'imageRepoUrl'],
    ['a string poll interval', (c) => ((c as Record<string, unknown>).pollIntervalSeconds = '60'), 'pollIntervalSeconds'],
    ['a bad baud rate', (c) => ((c.ecus.secondaries[0] as Record<string, unknown>).baud = 12.5), 'ecus.secondaries[0].baud'],
    ['an unknown verification mode', (c) => ((c.ecus.secondaries[0] as Record<string, unknown>).verification = 'some'), 'ecus.secondaries[0].verification'],
    ['no installer at all', (c) => delete (c.ecus.primary as Partial<typeof c.ecus.primary>).installCommand, 'ecus.primary.installer'],
    ['both an installer and an install command', (c) => ((c.ecus.primary as Record<string, unknown>).installer = { type: 'rauc' }), 'ecus.primary.installCommand'],
    ['an unknown installer type', (c) => withInstaller(c, { type: 'swupdate' }), 'ecus.primary.installer.type'],
    ['an installer that is not an object', (c) => withInstaller(c, 'rauc'), 'ecus.primary.installer'],
    ['a handler installer without its command', (c) => withInstaller(c, { type: 'handler' }), 'ecus.primary.installer.command'],
    ['a rauc installer with a handler setting', (c) => withInstaller(c, { type: 'rauc', command: '/bin/x' }), 'ecus.primary.installer.command'],
    ['an empty reboot command', (c) => withInstaller(c, { type: 'rauc', rebootCommand: '' }), 'ecus.primary.installer.rebootCommand'],
    ['a zero rauc timeout', (c) => withInstaller(c, { type: 'rauc', timeoutSeconds: 0 }), 'ecus.primary.installer.timeoutSeconds'],
    ['a missing provisioning root', (c) => delete (c.provisioning as Partial<typeof c.provisioning>).imageRepoRoot, 'provisioning.imageRepoRoot'],
    ['a duplicate ECU serial', (c) => (c.ecus.secondaries[0]!.serial = 'gw-1'), 'ecus'],
    ['a device ID unfit for a topic', (c) => (c.deviceId = 'a/b'), 'deviceId'],
  ];
  for (const [name, mutate, expected] of bad) {
    it(`names the field for ${name}`, () => {
      const c = valid();
      mutate(c);
      assert.equal(field(() => parseConfig(c)), expected);
    });
  }
});

describe('loadConfig', () => {
  it('lets UPFLEET_* env override the file, and flags override env', () => {
    const file = join(dir, 'agent.json');
    writeFileSync(file, JSON.stringify(valid()));
    const c = loadConfig({
      file,
      env: { UPFLEET_POLL_INTERVAL_SECONDS: '5', UPFLEET_DEVICE_ID: 'from-env', UPFLEET_PROVISIONING_TOKEN: 'tok' },
      overrides: { deviceId: 'from-flag' },
    });
    assert.equal(c.pollIntervalSeconds, 5);
    assert.equal(c.deviceId, 'from-flag');
    assert.equal(c.provisioning.token, 'tok');
  });

  it('takes the primary ECU serial from UPFLEET_PRIMARY_SERIAL, and validates it like the file', () => {
    const file = join(dir, 'agent3.json');
    writeFileSync(file, JSON.stringify(valid()));
    assert.equal(loadConfig({ file, env: { UPFLEET_PRIMARY_SERIAL: 'gw-0042' } }).ecus.primary.serial, 'gw-0042');
    assert.equal(field(() => loadConfig({ file, env: { UPFLEET_PRIMARY_SERIAL: '' } })), 'ecus.primary.serial');
  });

  it('names the env-overridden field when its value is bad', () => {
    const file = join(dir, 'agent2.json');
    writeFileSync(file, JSON.stringify(valid()));
    assert.equal(field(() => loadConfig({ file, env: { UPFLEET_POLL_INTERVAL_SECONDS: 'soon' } })), 'pollIntervalSeconds');
  });

  it('reports a file that is not JSON', () => {
    const file = join(dir, 'broken.json');
    writeFileSync(file, '{ nope');
    assert.equal(field(() => loadConfig({ file })), '(file)');
  });
});

describe('upfleet-agent CLI', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, UPFLEET_CONFIG: '' } });

  it('prints help with exit 0', () => {
    const r = run('--help');
    assert.equal(r.status, 0);
    assert.match(r.stdout, /check --once/);
  });

  it('exits 2 on an unknown command or flag', () => {
    assert.equal(run('frobnicate').status, 2);
    const r = run('status', '--no-such-flag');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /no-such-flag/);
  });

  it('exits 1 naming the bad config field', () => {
    const file = join(dir, 'bad.json');
    const c = valid();
    (c.ecus.secondaries[0] as Record<string, unknown>).baud = 'fast';
    writeFileSync(file, JSON.stringify(c));
    const r = run('status', '--config', file);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /ConfigError: config ecus\.secondaries\[0\]\.baud: must be a number/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });
});
