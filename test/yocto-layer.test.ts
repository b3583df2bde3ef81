/**
 * Static checks of the Yocto layer yocto/meta-upfleet, without BitBake (which
 * CI does not have): layer compatibility and dependencies, the recipe, the
 * systemd units' sandbox, the default agent.json shape, the generated npm
 * dependency list, and that no private key material is in the layer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../agent/src/config.ts';

const layer = fileURLToPath(new URL('../yocto/meta-upfleet/', import.meta.url));
const recipeDir = join(layer, 'recipes-upfleet', 'upfleet-agent');
const read = (...parts: string[]): string => readFileSync(join(layer, ...parts), 'utf8');

/** BitBake `NAME = "value"` / `NAME ?= "value"`, continuation lines joined, or undefined. */
function bbVar(text: string, name: string): string | undefined {
  const escaped = name.replace(/[$:{}]/g, (c) => '\\' + c);
  const value = text.match(new RegExp(`^${escaped}\\s*\\??=\\s*"([^"]*)"`, 'm'))?.[1];
  return value?.replace(/\\\n/g, ' ').replace(/\s+/g, ' ').trim();
}

/** systemd unit `Key=value` lines, every value kept (keys may repeat). */
function unitSettings(text: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = line.match(/^([A-Za-z]+)=(.*)$/);
    if (m) settings.set(m[1]!, [...(settings.get(m[1]!) ?? []), m[2]!]);
  }
  return settings;
}

test('layer.conf declares current release series and depends on meta-oe', () => {
  const conf = read('conf', 'layer.conf');
  const series = bbVar(conf, 'LAYERSERIES_COMPAT_upfleet')?.split(/\s+/) ?? [];
  assert.ok(series.includes('scarthgap') && series.includes('wrynose'), `LAYERSERIES_COMPAT_upfleet: ${series.join(' ')}`);
  const depends = bbVar(conf, 'LAYERDEPENDS_upfleet')?.split(/\s+/) ?? [];
  assert.ok(depends.includes('openembedded-layer'), 'LAYERDEPENDS_upfleet must name openembedded-layer (nodejs)');
});

test('the agent recipe inherits systemd and useradd, ships its units and runs on the target nodejs', () => {
  const recipe = read('recipes-upfleet', 'upfleet-agent', 'upfleet-agent_0.1.0.bb');
  const inherits = recipe.match(/^inherit\s+(.+)$/m)?.[1]?.split(/\s+/) ?? [];
  assert.ok(inherits.includes('systemd') && inherits.includes('useradd'), `inherit ${inherits.join(' ')}`);
  assert.deepEqual(bbVar(recipe, 'SYSTEMD_SERVICE:${PN}')?.split(/\s+/).sort(), ['upfleet-agent.service', 'upfleet-provision.service', 'upfleet-reboot.path']);
  assert.ok(bbVar(recipe, 'RDEPENDS:${PN}')?.split(/\s+/).includes('nodejs'));
  assert.match(bbVar(recipe, 'USERADD_PARAM:${PN}') ?? '', /^--system\b.*\bupfleet$/);
});

test('upfleet-agent.service runs the agent sandboxed, as upfleet, with serial access', () => {
  const unit = unitSettings(read('recipes-upfleet', 'upfleet-agent', 'files', 'upfleet-agent.service'));
  assert.deepEqual(unit.get('Type'), ['notify'], 'READY=1 and the watchdog (agent/src/systemd-notify.ts)');
  assert.deepEqual(unit.get('NotifyAccess'), ['all'], 'systemd-notify is a child of the agent');
  assert.match(unit.get('WatchdogSec')?.[0] ?? '', /^\d+s$/);
  assert.deepEqual(unit.get('DevicePolicy'), ['closed'], 'serial ports come from the 50-serial-ports.conf drop-in');
  assert.deepEqual(unit.get('SystemCallFilter'), ['@system-service', '~@privileged @resources']);
  assert.deepEqual(unit.get('RestrictAddressFamilies'), ['AF_UNIX AF_INET AF_INET6']);
  assert.ok(unit.get('MemoryMax') && unit.get('MemoryHigh'), 'memory limits');
  assert.deepEqual(unit.get('RuntimeDirectory'), ['upfleet'], 'the restart request of the RAUC installer');
  assert.match(unit.get('ExecStart')?.[0] ?? '', /\/upfleet-agent run --config \/etc\/upfleet\/agent\.json$/);
  assert.deepEqual(unit.get('Restart'), ['on-failure']);
  assert.deepEqual(unit.get('User'), ['upfleet']);
  assert.deepEqual(unit.get('NoNewPrivileges'), ['yes']);
  assert.deepEqual(unit.get('ProtectSystem'), ['strict']);
  assert.deepEqual(unit.get('ProtectHome'), ['yes']);
  assert.deepEqual(unit.get('PrivateTmp'), ['yes']);
  assert.deepEqual(unit.get('ReadWritePaths'), ['/var/lib/upfleet']);
  assert.deepEqual(unit.get('StateDirectory'), ['upfleet']);
  assert.deepEqual(unit.get('RequiresMountsFor'), ['/var/lib/upfleet'], 'the state sits on the data partition');
  assert.ok(unit.get('SupplementaryGroups')?.[0]?.split(/\s+/).includes('dialout'));
  assert.equal(unit.get('MemoryDenyWriteExecute'), undefined, 'V8 needs W+X pages');
});

test('upfleet-provision.service runs provisioning once, before the agent', () => {
  const unit = unitSettings(read('recipes-upfleet', 'upfleet-agent', 'files', 'upfleet-provision.service'));
  assert.deepEqual(unit.get('Type'), ['oneshot']);
  assert.match(unit.get('ExecStart')?.[0] ?? '', /\/upfleet-agent provision --config \/etc\/upfleet\/agent\.json$/);
  assert.ok(unit.get('Before')?.[0]?.split(/\s+/).includes('upfleet-agent.service'));
  assert.match(unit.get('ConditionPathExists')?.[0] ?? '', /^!\/var\/lib\/upfleet\//);
  assert.deepEqual(unit.get('UMask'), ['0077']);
  assert.deepEqual(unit.get('RequiresMountsFor'), ['/var/lib/upfleet'], 'the key is made on the data partition');
});

test('the default agent.json has the agent config shape and the layer paths', () => {
  const config = JSON.parse(read('recipes-upfleet', 'upfleet-agent', 'files', 'agent.json')) as Record<string, unknown>;
  for (const key of ['deviceId', 'directorUrl', 'imageRepoUrl', 'storageDir', 'keyPath', 'pollIntervalSeconds', 'provisioning', 'ecus']) {
    assert.ok(key in config, `agent.json lacks ${key}`);
  }
  assert.equal(config.storageDir, '/var/lib/upfleet');
  assert.equal(config.keyPath, '/var/lib/upfleet/keys/primary.key');
  assert.equal(typeof config.pollIntervalSeconds, 'number');
  assert.deepEqual(config.provisioning, {
    directorRoot: '/etc/upfleet/director-root.json',
    imageRepoRoot: '/etc/upfleet/image-repo-root.json',
  });
  const ecus = config.ecus as { primary: Record<string, unknown>; secondaries: unknown };
  assert.deepEqual(Object.keys(ecus.primary).sort(), ['hardwareId', 'installer', 'serial']);
  assert.ok(Array.isArray(ecus.secondaries));
});

test('every npm tarball in the generated dependency list is pinned by a sha512', () => {
  const inc = readFileSync(join(recipeDir, 'upfleet-agent-npm.inc'), 'utf8');
  assert.match(bbVar(inc, 'UPFLEET_SRCREV') ?? '', /^[0-9a-f]{40}$/);
  const names = [...inc.matchAll(/;name=(npm-[^ ;\\]+)/g)].map((m) => m[1]!);
  const sums = new Map([...inc.matchAll(/^SRC_URI\[(npm-[^\]]+)\.sha512sum\] = "([0-9a-f]*)"/gm)].map((m) => [m[1]!, m[2]!]));
  assert.ok(names.includes('npm-better-sqlite3-' + (inc.match(/better-sqlite3-(\d+\.\d+\.\d+)\.tgz/)?.[1] ?? '?')));
  for (const name of names) assert.match(sums.get(name) ?? '', /^[0-9a-f]{128}$/, `${name} has no sha512sum`);
  assert.deepEqual([...sums.keys()].sort(), [...new Set(names)].sort());
});

test('no private key material is in the layer', () => {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else files.push(path);
    }
  };
  walk(layer);
  assert.ok(files.length > 5 && existsSync(join(layer, 'README.md')));
  for (const path of files) {
    assert.doesNotMatch(path, /\.(key|pem|p12|pfx)$/, `${path}: key file in the layer`);
    const text = readFileSync(path, 'latin1');
    assert.doesNotMatch(text, /-----BEGIN [A-Z ]*PRIVATE KEY-----/, `${path}: PEM private key`);
    assert.doesNotMatch(text, /"format"\s*:\s*"upfleet-encrypted-key\//, `${path}: Upfleet key file`);
    assert.doesNotMatch(text, /"private"\s*:\s*"[0-9a-f]{32,}"/, `${path}: TUF private key`);
  }
});

test('first boot gives each device its ID and primary serial, which the agent config then takes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-firstboot-'));
  try {
    const template = JSON.parse(read('recipes-upfleet', 'upfleet-agent', 'files', 'agent.json')) as Record<string, any>;
    const config = {
      ...template,
      directorUrl: 'http://127.0.0.1:8080',
      imageRepoUrl: 'http://127.0.0.1:8081',
      mqttUrl: undefined,
      ecus: { primary: { ...template.ecus.primary, hardwareId: 'gateway', installer: { type: 'rauc' } },
        secondaries: [{ serial: 'brake-7', hardwareId: 'brake', port: '/dev/ttyS1', baud: 115200, verification: 'partial' }] },
    };
    const configFile = join(dir, 'agent.json');
    writeFileSync(configFile, JSON.stringify(config, null, 2));
    writeFileSync(join(dir, 'machine-id'), '0123456789abcdef0123456789abcdef\n');
    const run = () => spawnSync('sh', [join(recipeDir, 'files', 'upfleet-firstboot.sh'), 'prepare'], {
      env: { PATH: process.env.PATH, UPFLEET_FIRSTBOOT_CONFIG: configFile, UPFLEET_FIRSTBOOT_STATE: join(dir, 'state'), UPFLEET_FIRSTBOOT_MACHINE_ID: join(dir, 'machine-id') },
      encoding: 'utf8',
    });
    assert.equal(run().status, 0);
    const envFile = readFileSync(join(dir, 'state', 'device.env'), 'utf8');
    assert.equal(envFile, 'UPFLEET_DEVICE_ID=0123456789abcdef0123456789abcdef\nUPFLEET_PRIMARY_SERIAL=0123456789abcdef0123456789abcdef-primary\n');
    writeFileSync(join(dir, 'machine-id'), 'fedcba9876543210fedcba9876543210\n');
    assert.equal(run().status, 0);
    assert.equal(readFileSync(join(dir, 'state', 'device.env'), 'utf8'), envFile, 'IDs never change once written');

    const env = Object.fromEntries(envFile.trim().split('\n').map((l) => l.split('=') as [string, string]));
    const loaded = loadConfig({ file: configFile, env });
    assert.equal(loaded.deviceId, '0123456789abcdef0123456789abcdef');
    assert.equal(loaded.ecus.primary.serial, '0123456789abcdef0123456789abcdef-primary');

    const provision = unitSettings(read('recipes-upfleet', 'upfleet-agent', 'files', 'upfleet-provision.service'));
    assert.ok(provision.get('EnvironmentFile')?.includes('-/var/lib/upfleet/device.env'), 'provisioning must see the IDs first boot made');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Runs a Python snippet with the layer's lib/ on the path; its stdout parsed as JSON. */
function layerPython(code: string): any {
  const r = spawnSync('python3', ['-c', `import json, sys\nsys.path.insert(0, ${JSON.stringify(join(layer, 'lib'))})\n${code}`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

const hasPython = spawnSync('sh', ['-c', 'command -v python3'], { stdio: 'ignore' }).status === 0;

test('the config generator writes a RAUC installer the agent accepts, and a drop-in allowing only the serial ports', { skip: !hasPython && 'no python3' }, () => {
  const template = read('recipes-upfleet', 'upfleet-agent', 'files', 'agent.json');
  const out = layerPython(`
from upfleet import agentconfig as a
t = json.loads(${JSON.stringify(template)})
v = {"UPFLEET_DIRECTOR_URL": "https://director.example", "UPFLEET_IMAGE_REPO_URL": "https://images.example",
     "UPFLEET_PRIMARY_HARDWARE_ID": "gateway", "UPFLEET_PRIMARY_INSTALLER": "rauc",
     "UPFLEET_RAUC_REBOOT_COMMAND": "touch /run/upfleet/reboot-request",
     "UPFLEET_SECONDARIES": "brake-1,brake,/dev/ttyS1 cam-1,camera,/dev/ttyUSB0,57600,full"}
cfg = a.build(t, v)
errors = []
for bad in ({"UPFLEET_PRIMARY_INSTALLER": "mender"}, {"UPFLEET_PRIMARY_INSTALLER": "handler"}):
    try:
        a.build(t, {**v, **bad})
    except a.ConfigError as e:
        errors.append(str(e))
print(json.dumps({"cfg": cfg, "dropin": a.serial_dropin(cfg), "errors": errors,
                  "mount": a.data_mount("/dev/disk/by-partlabel/data", "ext4")}))`);
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-agentconfig-'));
  try {
    const file = join(dir, 'agent.json');
    writeFileSync(file, JSON.stringify(out.cfg));
    const loaded = loadConfig({ file, env: { UPFLEET_DEVICE_ID: 'dev-1', UPFLEET_PRIMARY_SERIAL: 'gw-1' } });
    assert.deepEqual(loaded.ecus.primary.installer, { type: 'rauc', rebootCommand: 'touch /run/upfleet/reboot-request', timeoutSeconds: 1800, rebootTimeoutSeconds: 600 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(out.dropin.trim().split('\n').filter((l: string) => l.startsWith('DeviceAllow=')), ['DeviceAllow=/dev/ttyS1 rw', 'DeviceAllow=/dev/ttyUSB0 rw']);
  assert.match(out.errors[0], /UPFLEET_PRIMARY_INSTALLER='mender'/);
  assert.match(out.errors[1], /UPFLEET_PRIMARY_INSTALL_COMMAND is not set/);
  assert.match(out.mount, /^Where=\/var\/lib\/upfleet$/m, 'the data partition at the state directory the units require');
  const reboot = unitSettings(read('recipes-upfleet', 'upfleet-agent', 'files', 'upfleet-reboot.path'));
  assert.deepEqual(reboot.get('PathExists'), ['/run/upfleet/reboot-request'], 'the rebootCommand the generator writes');
});

test('a RAUC bundle is described as the Upfleet target the agent matches (hardware ID, SemVer version, release counter, hashes)', { skip: !hasPython && 'no python3' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-bundletarget-'));
  try {
    const bundle = join(dir, 'gw.raucb');
    writeFileSync(bundle, 'not really a bundle, but bytes to hash');
    const out = layerPython(`
from upfleet import bundletarget as b
t = b.describe(${JSON.stringify(bundle)}, "gw-bundle-qemux86-64-1.2.0.raucb", "gateway", "1.2.0", "7")
errors = []
for args in (("gw", "gateway", "1.2", "7"), ("gw", "gateway", "1.2.0", "seven"), ("gw", "", "1.2.0", "7")):
    try:
        b.describe(${JSON.stringify(bundle)}, *args)
    except b.ConfigError as e:
        errors.append(str(e))
print(json.dumps({"target": t, "errors": errors}))`);
    assert.deepEqual(out.target.custom, { hardwareIds: ['gateway'], releaseCounter: 7, version: '1.2.0' });
    assert.equal(out.target.length, 38);
    assert.match(out.target.hashes.sha256, /^[0-9a-f]{64}$/);
    assert.match(out.target.hashes.sha512, /^[0-9a-f]{128}$/);
    assert.deepEqual(out.target.publish.slice(0, 3), ['upfleet-repo', 'add-target', bundle]);
    assert.deepEqual(out.errors.map((e: string) => e.split('=')[0]!.split(' ')[0]), ['UPFLEET_TARGET_VERSION', 'UPFLEET_RELEASE_COUNTER', 'UPFLEET_TARGET_HARDWARE_ID']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the upfleet-agent wrapper passes the first-boot device ID and primary serial, and what the caller set wins', () => {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-wrapper-'));
  try {
    const wrapper = read('recipes-upfleet', 'upfleet-agent', 'files', 'upfleet-agent.sh')
      .replaceAll('/var/lib/upfleet/device.env', join(dir, 'device.env'))
      .replace('exec @NODE@ @MAIN@ "$@"', 'exec env');
    writeFileSync(join(dir, 'wrapper.sh'), wrapper);
    writeFileSync(join(dir, 'device.env'), 'UPFLEET_DEVICE_ID=abc\nUPFLEET_PRIMARY_SERIAL=abc-primary\n');
    const envOf = (env: Record<string, string>) => {
      const r = spawnSync('sh', [join(dir, 'wrapper.sh')], { env: { PATH: process.env.PATH!, ...env }, encoding: 'utf8' });
      return Object.fromEntries(r.stdout.split('\n').filter((l) => l.startsWith('UPFLEET_')).map((l) => l.split('=') as [string, string]));
    };
    assert.deepEqual(envOf({}), { UPFLEET_DEVICE_ID: 'abc', UPFLEET_PRIMARY_SERIAL: 'abc-primary' });
    assert.deepEqual(envOf({ UPFLEET_PRIMARY_SERIAL: 'gw-9' }), { UPFLEET_DEVICE_ID: 'abc', UPFLEET_PRIMARY_SERIAL: 'gw-9' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
