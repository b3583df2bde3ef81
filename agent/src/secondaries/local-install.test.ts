import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ed25519Signer, LengthOrHashMismatchError, RepositoryBuilder, verifyEcuReport } from '@upfleet/core';
import { InstallError } from '../errors.ts';
import { LocalInstallSecondary } from './local-install.ts';
import type { ImageToInstall } from './secondary.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/**
 * A handler that logs each phase and copies the image into slot-<x>; health fails when
 * FAIL_HEALTH exists; activate is ended by SIGTERM (as a reboot ends it) when REBOOT exists.
 */
function setup(o: { timeoutSeconds?: number; bootId?: () => string } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-local-'));
  dirs.push(dir);
  const script = join(dir, 'handler.sh');
  writeFileSync(
    script,
    `#!/bin/sh
echo "$UPFLEET_PHASE $UPFLEET_SLOT" >> "${dir}/log"
case "$UPFLEET_PHASE" in
  install) cp "$1" "${dir}/slot-$UPFLEET_SLOT" ;;
  health) [ ! -e "${dir}/FAIL_HEALTH" ] ;;
  activate) [ ! -e "${dir}/REBOOT" ] || kill -TERM $$ ;;
esac
`,
  );
  chmodSync(script, 0o755);
  const signer = Ed25519Signer.generate();
  const make = () => new LocalInstallSecondary({ ecuSerial: 'gw-1', hardwareId: 'gw', installCommand: script, timeoutSeconds: o.timeoutSeconds ?? 10, signer, dir: join(dir, 'state'), bootId: o.bootId ?? (() => 'boot-1') });
  return { dir, ecu: make(), make, signer, log: () => readFileSync(join(dir, 'log'), 'utf8').trim().split('\n') };
}

function imageOf(data: Buffer, name = 'fw.bin', releaseCounter = 0): ImageToInstall {
  return {
    name,
    length: data.length,
    releaseCounter,
    hashes: { sha256: createHash('sha256').update(data).digest('hex'), sha512: createHash('sha512').update(data).digest('hex') },
    async *open(offset: number) {
      for (let i = offset; i < data.length; i += 4096) yield data.subarray(i, Math.min(i + 4096, data.length));
    },
  };
}

function bundleWith(name: string, data: Buffer, releaseCounter: number) {
  const repo = new RepositoryBuilder({ now: new Date() });
  repo.addTarget(name, data, { custom: { hardwareIds: ['gw'], releaseCounter, version: '2' } });
  repo.commit();
  return { director: {}, image: { 'targets.json': repo.bytes('targets') } };
}

describe('LocalInstallSecondary', () => {
  it('installs to the inactive slot, activates, health-checks, commits, and reports it signed', async () => {
    const { dir, ecu, signer, log } = setup();
    const data = randomBytes(50_000);
    // The bundle's unverified image metadata claims 99: only the verified plan's 7 counts.
    await ecu.putMetadata(bundleWith('fw.bin', data, 99));
    await ecu.install(imageOf(data, 'fw.bin', 7));
    await ecu.activate();
    assert.deepEqual(log(), ['install b', 'activate b', 'health b', 'commit b']);
    assert.deepEqual(readFileSync(join(dir, 'slot-b')), data);
    const info = await ecu.info();
    assert.equal(info.installed?.filename, 'fw.bin');
    assert.equal(info.releaseCounter, 7);
    const report = await ecu.versionReport('nonce-1');
    verifyEcuReport(report, signer.key);
    assert.equal(report.signed.nonce, 'nonce-1');
    assert.equal(report.signed.installedImage.length, data.length);
    assert.equal(ecu.slots().active, 'b');
  });

  it('rolls back when the health check fails, keeping the old image', async () => {
    const { dir, ecu, log } = setup();
    const data = randomBytes(1000);
    await ecu.install(imageOf(data));
    writeFileSync(join(dir, 'FAIL_HEALTH'), '');
    await assert.rejects(ecu.activate(), (e: unknown) => e instanceof InstallError && e.phase === 'health');
    assert.deepEqual(log(), ['install b', 'activate b', 'health b', 'rollback b']);
    assert.equal((await ecu.info()).installed, null);
    assert.equal(ecu.slots().active, 'a');
  });

  it('refuses an image whose bytes do not match, and never runs the handler', async () => {
    const { dir, ecu } = setup();
    const data = randomBytes(1000);
    const img = imageOf(data);
    const tampered = { ...img, open: async function* () { yield Buffer.from(data.map((b, i) => (i === 5 ? b ^ 1 : b))); } };
    await assert.rejects(ecu.install(tampered), (e: unknown) => e instanceof LengthOrHashMismatchError && e.field === 'sha256');
    assert.equal(existsSync(join(dir, 'log')), false);
  });

  it('resumes staging from the bytes already staged', async () => {
    const { ecu } = setup();
    const data = randomBytes(20_000);
    const img = imageOf(data);
    const offsets: number[] = [];
    let fail = true;
    const flaky: ImageToInstall = {
      ...img,
      async *open(offset) {
        offsets.push(offset);
        for await (const c of img.open(offset)) {
          yield c;
          if (fail && offset === 0) {
            fail = false;
            throw new Error('link lost');
          }
        }
      },
    };
    await assert.rejects(ecu.install(flaky), /link lost/);
    await ecu.install(flaky);
    assert.deepEqual(offsets, [0, 4096]);
    await ecu.activate();
    assert.equal((await ecu.info()).installed?.filename, 'fw.bin');
  });

  it('abort rolls back an installed image that was not activated', async () => {
    const { ecu, log } = setup();
    await ecu.install(imageOf(randomBytes(100)));
    await ecu.abort();
    assert.deepEqual(log(), ['install b', 'rollback b']);
    await ecu.activate(); // nothing pending: a no-op
    assert.equal((await ecu.info()).installed, null);
  });

  it('a handler that SIGTERM ended in activate (a reboot) is a restart under way: activate waits; after the restart, health and commit', async () => {
    let boot = 'boot-1';
    const { dir, ecu, make, log } = setup({ bootId: () => boot });
    await ecu.install(imageOf(randomBytes(1000)));
    writeFileSync(join(dir, 'REBOOT'), '');
    let settled = false;
    void ecu.activate().finally(() => (settled = true));
    await ecu.rebootRequested;
    assert.equal(ecu.slots().pending?.phase, 'activating', 'recorded before the handler ran');
    assert.equal(ecu.slots().pending?.bootId, 'boot-1');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(settled, false, 'activate does not settle while the machine goes down');
    await ecu.close();

    rmSync(join(dir, 'REBOOT'));
    boot = 'boot-2';
    await make().activate();
    assert.deepEqual(log(), ['install b', 'activate b', 'health b', 'commit b'], 'activate ran once');
    assert.equal(make().slots().active, 'b');
  });

  it('after an agent restart in the same boot (the machine did not go down), activate runs again', async () => {
    const { dir, ecu, make, log } = setup({ bootId: () => 'same-boot' });
    await ecu.install(imageOf(randomBytes(1000)));
    writeFileSync(join(dir, 'REBOOT'), '');
    void ecu.activate();
    await ecu.rebootRequested;
    await ecu.close();
    rmSync(join(dir, 'REBOOT'));
    await make().activate();
    assert.deepEqual(log(), ['install b', 'activate b', 'activate b', 'health b', 'commit b']);
  });

  it('fails with a typed error when the machine does not go down within timeoutSeconds of the SIGTERM', async () => {
    const { dir, ecu } = setup({ timeoutSeconds: 1, bootId: () => 'boot-x' });
    await ecu.install(imageOf(randomBytes(1000)));
    writeFileSync(join(dir, 'REBOOT'), '');
    await assert.rejects(ecu.activate(), (e: unknown) => e instanceof InstallError && e.phase === 'reboot' && /did not restart within 1 s/.test(e.message));
  });

  it('a handler failing in activate otherwise (exit status) is a failure at once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'upfleet-local-fail-'));
    dirs.push(dir);
    const failing = new LocalInstallSecondary({ ecuSerial: 'gw-1', hardwareId: 'gw', installCommand: 'test "$UPFLEET_PHASE" != activate && true', timeoutSeconds: 10, signer: Ed25519Signer.generate(), dir, bootId: () => 'boot-1' });
    await failing.install(imageOf(randomBytes(100)));
    await assert.rejects(failing.activate(), (e: unknown) => e instanceof InstallError && e.phase === 'activate');
  });
});
