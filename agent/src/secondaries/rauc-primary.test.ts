/**
 * The RAUC installer against the real rauc and its service (testing/rauc-system.ts):
 * real bundles, real slot writes, the bootloader state RAUC sets, simulated
 * restarts (the bootloader skips a slot it started that nobody confirmed, as
 * GRUB's tries do). Each "boot" gets a new RaucPrimary and its `confirmBoot`,
 * as a restarted agent would.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ed25519Signer, LengthOrHashMismatchError, verifyEcuReport } from '@upfleet/core';
import { BootFallbackError, HealthCheckError, InstallError } from '../errors.ts';
import { RaucTestSystem, raucUnavailable } from '../testing/rauc-system.ts';
import { RaucPrimary } from './rauc-primary.ts';
import type { ImageToInstall } from './secondary.ts';

const skip = raucUnavailable() ?? false;

function imageOf(bytes: Buffer, name: string, releaseCounter: number, file: string): ImageToInstall {
  writeFileSync(file, bytes);
  return {
    name,
    length: bytes.length,
    releaseCounter,
    hashes: { sha256: createHash('sha256').update(bytes).digest('hex'), sha512: createHash('sha512').update(bytes).digest('hex') },
    localPath: file,
    async *open(offset: number) {
      yield bytes.subarray(offset);
    },
  };
}

describe('RaucPrimary with the real rauc', { skip }, () => {
  let system: RaucTestSystem;
  let dir: string;
  const signer = Ed25519Signer.generate();
  let healthy = true;

  before(async () => {
    system = await RaucTestSystem.create();
    dir = mkdtempSync(join(tmpdir(), 'upfleet-rauc-agent-'));
  });
  after(async () => {
    await system?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The installer as a fresh agent start in the current boot would make it. */
  const primary = () =>
    new RaucPrimary({
      ecuSerial: 'gw-1',
      hardwareId: 'gateway',
      installer: { type: 'rauc', rebootCommand: `touch ${join(dir, 'reboot-requested')}`, healthCheck: `test ! -e ${join(dir, 'UNHEALTHY')}`, timeoutSeconds: 60, rebootTimeoutSeconds: 30 },
      signer,
      dir: join(dir, 'state'),
      directorReachable: async () => {
        if (!healthy) throw new Error('director unreachable');
      },
      bootId: () => system.bootId,
      env: system.env,
    });

  /** What an agent start does: a new installer, and the booted slot confirmed unless it is on trial. */
  async function start(expect: 'confirmed' | 'onTrial' = 'confirmed'): Promise<RaucPrimary> {
    const p = primary();
    assert.equal(await p.confirmBoot(), expect);
    return p;
  }

  /** Runs `step` until it asks for a restart; the installer waits for it, so the returned promise stays pending. */
  async function untilRestart(p: RaucPrimary, step: (p: RaucPrimary) => Promise<void>): Promise<void> {
    rmSync(join(dir, 'reboot-requested'), { force: true });
    const settled = step(p).then(
      () => assert.fail('the step finished instead of waiting for the restart'),
      (e: unknown) => assert.fail(`the step failed instead of restarting: ${String(e)}`),
    );
    await Promise.race([p.rebootRequested, settled]);
    assert.ok(existsSync(join(dir, 'reboot-requested')), 'the reboot command ran');
    await p.close();
  }

  const v1 = randomBytes(300_000);
  it('installs a bundle into the other slot, restarts into it, checks health, marks it good and reports it', async () => {
    const p = primary();
    assert.equal((await p.info()).installed, null, 'nothing installed by the agent yet');
    const image = imageOf(system.bundle('1.0.0', v1), 'gateway-1.raucb', 3, join(dir, 'v1.raucb'));
    await p.install(image);
    assert.deepEqual(system.slotBytes('B', v1.length), v1, 'rauc wrote slot B');
    assert.equal(system.bootloader().primary, 'B', 'rauc made B the primary');
    assert.equal(p.state().pending?.phase, 'installed');
    await p.install(image); // redone after a power loss: nothing happens twice
    await untilRestart(p, (x) => x.activate());
    assert.equal(p.state().pending?.phase, 'rebooting');

    assert.equal(await system.reboot(), 'B');
    const after = await start('onTrial');
    assert.deepEqual(system.tried(), ['B'], 'on trial: not confirmed before its health check');
    await after.activate();
    assert.deepEqual(system.tried(), [], 'confirmed after its health check');
    assert.equal(system.status().booted, 'B');
    assert.equal(system.bootloader().B, 'good');
    const info = await after.info();
    assert.equal(info.installed?.filename, 'gateway-1.raucb');
    assert.equal(info.releaseCounter, 3);
    assert.equal(after.state().pending, undefined);
    const report = await after.versionReport('nonce-1');
    verifyEcuReport(report, signer.key);
    assert.equal(report.signed.installedImage.filename, 'gateway-1.raucb');
  });

  it('goes back to the old slot when the new one fails its health check, and reports the old image', async () => {
    const v2 = randomBytes(200_000);
    const p = primary();
    await p.install(imageOf(system.bundle('2.0.0', v2), 'gateway-2.raucb', 4, join(dir, 'v2.raucb')));
    assert.deepEqual(system.slotBytes('A', v2.length), v2, 'rauc wrote slot A (B runs)');
    await untilRestart(p, (x) => x.activate());
    assert.equal(await system.reboot(), 'A');

    writeFileSync(join(dir, 'UNHEALTHY'), '');
    const unhealthy = await start('onTrial');
    const error = await unhealthy.activate().then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof HealthCheckError, String(error));
    assert.deepEqual([error.slot, error.fallbackSlot], ['rootfs.0', 'rootfs.1']);
    // The runner's rollback: mark the new slot bad, the old one active, restart.
    await untilRestart(unhealthy, (x) => x.abort());
    assert.deepEqual(system.bootloader(), { primary: 'B', A: 'bad', B: 'good' });
    rmSync(join(dir, 'UNHEALTHY'));

    assert.equal(await system.reboot(), 'B');
    const back = await start();
    await back.abort();
    assert.equal(back.state().pending, undefined);
    const info = await back.info();
    assert.equal(info.installed?.filename, 'gateway-1.raucb', 'the old image runs and is reported');
    assert.equal(info.releaseCounter, 3);
  });

  it('notices a bootloader fallback it did not ask for, and makes the running slot primary again', async () => {
    const p = primary();
    await p.install(imageOf(system.bundle('3.0.0', randomBytes(100_000)), 'gateway-3.raucb', 5, join(dir, 'v3.raucb')));
    await untilRestart(p, (x) => x.activate());
    assert.equal(await system.reboot({ newSlotFails: true }), 'B', 'the new slot A did not boot: B runs');
    const after = await start();
    const error = await after.activate().then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof BootFallbackError, String(error));
    assert.deepEqual([error.slot, error.bootedSlot], ['rootfs.0', 'rootfs.1']);
    await after.abort();
    assert.equal(system.bootloader().primary, 'B');
    assert.equal((await after.info()).installed?.filename, 'gateway-1.raucb');
  });

  it('waits for an install an earlier agent process left running in the RAUC service, then installs its own', async () => {
    const earlier = join(dir, 'earlier.raucb');
    writeFileSync(earlier, system.bundle('3.5.0', randomBytes(3_500_000)));
    const { spawn } = await import('node:child_process');
    const left = spawn('rauc', ['install', earlier], { env: system.env, stdio: 'ignore' });
    const leftDone = new Promise((r) => left.once('exit', r));
    while (system.operation() === 'idle' && left.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    const mine = randomBytes(100_000);
    const p = primary();
    await p.install(imageOf(system.bundle('3.6.0', mine), 'gateway-36.raucb', 5, join(dir, 'v36.raucb')));
    await leftDone;
    assert.deepEqual(system.slotBytes('A', mine.length), mine, 'the agent installed after the earlier install, not beside it');
    await p.abort();
    assert.equal(system.bootloader().primary, 'B', 'abandoned: the running slot is primary again');
  });

  it('hands rauc nothing whose hashes do not match, and leaves the slots alone', async () => {
    const p = primary();
    const before = system.slotBytes('A', 4096);
    const image = imageOf(system.bundle('4.0.0', randomBytes(50_000)), 'gateway-4.raucb', 6, join(dir, 'v4.raucb'));
    writeFileSync(image.localPath!, Buffer.concat([readFileSync(image.localPath!).subarray(0, image.length - 1), Buffer.from([0])]));
    await assert.rejects(p.install(image), LengthOrHashMismatchError);
    assert.deepEqual(system.slotBytes('A', 4096), before);
    assert.equal(system.bootloader().primary, 'B');
    await p.abort();
  });

  it('fails with a typed error when rauc refuses a bundle its keyring does not trust, and rolls back to nothing', async () => {
    const p = primary();
    const image = imageOf(system.bundle('5.0.0', randomBytes(50_000), { signedBy: 'other-ca' }), 'gateway-5.raucb', 7, join(dir, 'v5.raucb'));
    const error = await p.install(image).then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof InstallError && error.phase === 'install', String(error));
    await p.abort();
    assert.equal(p.state().pending, undefined);
    assert.equal(system.bootloader().primary, 'B');
    assert.equal((await p.info()).installed?.filename, 'gateway-1.raucb');
  });

  it('confirms the committed slot at every start, so the bootloader keeps it across restarts without an update', async () => {
    assert.equal(await system.reboot(), 'B');
    assert.deepEqual(system.tried(), ['B'], 'GRUB-style: started, not yet confirmed');
    await start();
    assert.deepEqual(system.tried(), []);
    assert.equal(await system.reboot(), 'B', 'confirmed: the bootloader starts it again');
    const again = await start();
    assert.equal((await again.info()).installed?.filename, 'gateway-1.raucb');
  });

  it('after a power loss between the boot into the new slot and its mark-good, the next start sees the fallback and reports it, never success', async () => {
    const p = await start();
    await p.install(imageOf(system.bundle('6.0.0', randomBytes(100_000)), 'gateway-6.raucb', 8, join(dir, 'v6.raucb')));
    await untilRestart(p, (x) => x.activate());
    assert.equal(await system.reboot(), 'A');
    await start('onTrial'); // the agent starts; the power goes before activate checks health and marks the slot
    assert.equal(await system.reboot(), 'B', 'nobody confirmed A: the bootloader falls back');
    const back = await start();
    const error = await back.activate().then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof BootFallbackError, `expected the fallback, got ${String(error)}`);
    await back.abort();
    assert.equal(back.state().pending, undefined);
    assert.equal(system.bootloader().primary, 'B');
    assert.equal((await back.info()).installed?.filename, 'gateway-1.raucb', 'the old image is reported');
    assert.equal(back.state().releaseCounter, 3, 'nothing of 6.0.0 was committed');
  });

  it('after a power loss between mark-good and the commit, the next start checks health again and commits', async () => {
    const p = await start();
    const v7 = randomBytes(100_000);
    await p.install(imageOf(system.bundle('7.0.0', v7), 'gateway-7.raucb', 9, join(dir, 'v7.raucb')));
    await untilRestart(p, (x) => x.activate());
    assert.equal(await system.reboot(), 'A');
    const trial = await start('onTrial');
    // What activate does after the health check, then the power goes before the state is saved.
    const { spawnSync } = await import('node:child_process');
    assert.equal(spawnSync('rauc', ['status', 'mark-good', 'booted'], { env: system.env }).status, 0);
    await trial.close();
    assert.equal(await system.reboot(), 'A', 'A was marked good: the bootloader starts it again');
    const again = await start('onTrial');
    assert.notEqual((await again.info()).installed?.filename, 'gateway-7.raucb', 'not reported before the commit');
    await again.activate();
    assert.equal(again.state().pending, undefined);
    assert.equal(again.state().current, 'rootfs.0');
    assert.equal((await again.info()).installed?.filename, 'gateway-7.raucb');
    assert.deepEqual(system.slotBytes('A', v7.length), v7);
    assert.equal(await system.reboot(), 'A');
    await start();
  });
});
