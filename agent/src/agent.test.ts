/**
 * The agent's full cycle against loopback repositories built with the core
 * RepositoryBuilder (image repository) and a builder-backed director, with the
 * primary's install handler and install-handler secondaries. The same flow
 * against the real director, image repository and serial secondaries is in
 * agent/src/e2e.test.ts.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { Ed25519Signer, RepositoryBuilder, verifyEcuReport, type TargetFile } from '@upfleet/core';
import { createAgent, type Agent } from './agent.ts';
import { parseConfig, type AgentConfig } from './config.ts';
import type { ProgressEvent } from './cycle.ts';
import { CycleAbandonedError } from './errors.ts';
import { controlSocketPath } from './control-socket.ts';
import { LocalInstallSecondary } from './secondaries/local-install.ts';
import { BuilderDirector } from './testing/builder-director.ts';
import { serveFiles, type StaticServer } from './testing/static-server.ts';

const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of closers.reverse()) await c().catch(() => undefined);
  if (!process.env.KEEP) dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

interface World {
  dir: string;
  config: AgentConfig;
  images: RepositoryBuilder;
  imageServer: StaticServer;
  director: BuilderDirector;
  agent: Agent;
  secondaries: Array<{ ecu: LocalInstallSecondary; signer: Ed25519Signer }>;
  targets: Record<string, TargetFile>;
  data: Record<string, Buffer>;
}

async function world(options: { imageNow?: Date; maxImageBytes?: number; onProgress?: (p: ProgressEvent) => void } = {}): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-agent-'));
  dirs.push(dir);
  const now = new Date();
  const images = new RepositoryBuilder({ now: options.imageNow ?? now });
  const data = { 'gw.bin': randomBytes(70_000), 'brake.bin': randomBytes(50_000), 'door.bin': randomBytes(30_000) };
  const targets: Record<string, TargetFile> = {
    'gw.bin': images.addTarget('gw.bin', data['gw.bin'], { custom: { hardwareIds: ['gw'], releaseCounter: 2, version: '2.0' } }),
  };
  images.delegate('targets', { name: 'supplier', paths: ['supplier/*'] });
  targets['brake.bin'] = images.addTarget('supplier/brake.bin', data['brake.bin'], { role: 'supplier', custom: { hardwareIds: ['brake'], releaseCounter: 1, version: '1.1' } });
  targets['door.bin'] = images.addTarget('door.bin', data['door.bin'], { custom: { hardwareIds: ['door'], releaseCounter: 1, version: '1.0' } });
  images.commit();
  const imageServer = await serveFiles(() => images.files);
  closers.push(() => imageServer.close());
  const director = new BuilderDirector('car-1', now);
  await director.start();
  closers.push(() => director.close());
  writeFileSync(join(dir, 'director-root.json'), director.repo.bytes('root'));
  writeFileSync(join(dir, 'image-root.json'), images.bytes('root'));
  const handler = join(dir, 'handler.sh');
  writeFileSync(handler, `#!/bin/sh\necho "$UPFLEET_PHASE $UPFLEET_SLOT" >> "${dir}/handler.log"\n[ "$UPFLEET_PHASE" != install ] || cp "$1" "${dir}/slot-$UPFLEET_SLOT"\n`);
  chmodSync(handler, 0o755);
  const secondaries = ['brake', 'door'].map((hw, i) => {
    const signer = Ed25519Signer.generate();
    const ecu = new LocalInstallSecondary({ ecuSerial: `ecu-${hw}`, hardwareId: hw, installCommand: 'true', timeoutSeconds: 10, signer, dir: join(dir, `sec-${i}`), bootId: () => 'boot-1' });
    return { ecu, signer };
  });
  const config = parseConfig({
    deviceId: 'car-1',
    directorUrl: director.url,
    imageRepoUrl: imageServer.url,
    storageDir: join(dir, 'var'),
    keyPath: join(dir, 'var', 'primary.key'),
    pollIntervalSeconds: 60,
    provisioning: { directorRoot: join(dir, 'director-root.json'), imageRepoRoot: join(dir, 'image-root.json'), token: 'prov-token' },
    limits: { minBytesPerSecond: 0, ...(options.maxImageBytes !== undefined && { maxImageBytes: options.maxImageBytes }) },
    ecus: {
      primary: { serial: 'gw-1', hardwareId: 'gw', installCommand: handler },
      secondaries: [
        { serial: 'ecu-brake', hardwareId: 'brake', port: '/dev/null', baud: 115200, verification: 'full' },
        { serial: 'ecu-door', hardwareId: 'door', port: '/dev/null', baud: 115200, verification: 'partial' },
      ],
    },
  });
  const agent = await createAgent(config, {
    secondaries: secondaries.map((s) => s.ecu), passphrase: 'pw', logger: pino({ level: process.env.LOG ?? 'silent' }), ...(options.onProgress && { onProgress: options.onProgress }),
  });
  closers.push(() => agent.close());
  await agent.provision();
  return { dir, config, images, imageServer, director, agent, secondaries, targets, data };
}

function assignAll(w: World): void {
  w.director.assign([
    { ecuSerial: 'gw-1', hardwareId: 'gw', name: 'gw.bin', info: w.targets['gw.bin']!, order: 3 },
    { ecuSerial: 'ecu-brake', hardwareId: 'brake', name: 'supplier/brake.bin', info: w.targets['brake.bin']!, order: 1 },
    { ecuSerial: 'ecu-door', hardwareId: 'door', name: 'door.bin', info: w.targets['door.bin']!, order: 2 },
  ]);
}

describe('Agent cycle (builder repositories)', () => {
  let w: World;
  before(async () => {
    w = await world();
  });

  it('has nothing to do before any assignment, and reports a signed manifest', async () => {
    const out = await w.agent.checkOnce();
    assert.equal(out.result, 'noUpdate');
    assert.equal(out.undelivered, 0);
    const m = w.director.manifests.at(-1)!;
    assert.deepEqual(Object.keys(m.signed.ecuVersionReports).sort(), ['ecu-brake', 'ecu-door', 'gw-1']);
    verifyEcuReport(m.signed.ecuVersionReports['ecu-brake']!, w.secondaries[0]!.signer.key);
  });

  it('installs every assigned image, in the assignment order, and reports success', async () => {
    assignAll(w);
    const progress: string[] = [];
    const out = await w.agent.checkOnce();
    assert.equal(out.result, 'success', JSON.stringify(out.failure));
    assert.deepEqual(readFileSync(join(w.dir, 'slot-b')), w.data['gw.bin']);
    assert.deepEqual(readFileSync(join(w.dir, 'handler.log'), 'utf8').trim().split('\n'), ['install b', 'activate b', 'health b', 'commit b']);
    const status = await w.agent.status();
    assert.equal(status.state, 'idle');
    for (const e of status.ecus) assert.ok(e.installed, `${e.serial} has an image`);
    assert.equal(status.ecus.find((e) => e.serial === 'ecu-brake')!.installed!.filename, 'supplier/brake.bin');
    assert.equal(status.ecus.find((e) => e.serial === 'gw-1')!.releaseCounter, 2);
    const last = w.director.manifests.at(-1)!;
    assert.equal(last.signed.installationResult?.success, true);
    assert.deepEqual(last.signed.installationResult?.ecus.map((e) => e.ecuSerial), ['ecu-brake', 'ecu-door', 'gw-1']);
    assert.equal(last.signed.ecuVersionReports['gw-1']!.signed.installedImage.filename, 'gw.bin');
    assert.ok(w.director.progress.length > 0);
    void progress;
  });

  it('then has nothing new to do', async () => {
    const before = w.director.manifests.length;
    assert.equal((await w.agent.checkOnce()).result, 'noUpdate');
    assert.equal(w.director.manifests.length, before + 1);
  });
});

describe('Agent refusals (builder repositories)', () => {
  it('refuses a tampered image, installs nothing, reports ARBITRARY_SOFTWARE', async () => {
    const w = await world();
    assignAll(w);
    const t = w.targets['door.bin']!;
    w.imageServer.overrides.set(`targets/${t.hashes.sha256}.door.bin`, Buffer.from(w.data['door.bin'].map((b, i) => (i === 7 ? b ^ 0xff : b))));
    const out = await w.agent.checkOnce();
    assert.equal(out.result, 'failure');
    assert.equal(out.failure?.code, 'LENGTH_OR_HASH_MISMATCH');
    for (const e of (await w.agent.status()).ecus) assert.equal(e.installed, null, e.serial);
    const r = w.director.manifests.at(-1)!.signed.installationResult!;
    assert.equal(r.success, false);
    assert.equal(r.ecus.find((e) => e.ecuSerial === 'ecu-door')!.code, 'ARBITRARY_SOFTWARE');
  });

  it('refuses a director target that differs from the image repository', async () => {
    const w = await world();
    const t = w.targets['gw.bin']!;
    const forged = { ...t, length: t.length + 1, hashes: t.hashes } as TargetFile;
    w.director.assign([{ ecuSerial: 'gw-1', hardwareId: 'gw', name: 'gw.bin', info: forged }]);
    const out = await w.agent.checkOnce();
    assert.equal(out.result, 'failure');
    assert.equal(out.failure?.name, 'TargetMismatchError');
    assert.equal(out.failure?.fields.field, 'length');
    assert.equal(out.failure?.ecuSerial, 'gw-1');
    assert.ok(!w.imageServer.requests.some((r) => r.path.startsWith('targets/')), 'no image was downloaded');
    const r = w.director.manifests.at(-1)!.signed.installationResult!;
    assert.equal(r.ecus[0]!.code, 'ARBITRARY_SOFTWARE');
    assert.equal((await w.agent.status()).ecus.find((e) => e.serial === 'gw-1')!.installed, null);
  });

  it('refuses director targets signed for another device (replay across devices)', async () => {
    const w = await world();
    assignAll(w);
    w.director.repo.targets.unrecognizedFields.deviceId = 'car-2';
    w.director.repo.touch('targets');
    w.director.repo.commit();
    const out = await w.agent.checkOnce();
    assert.equal(out.result, 'failure');
    assert.equal(out.failure?.code, 'DEVICE_MISMATCH');
    assert.deepEqual(out.failure?.fields, { role: 'targets', expected: 'car-1', actual: 'car-2' });
    assert.ok(!w.imageServer.requests.some((r) => r.path.startsWith('targets/')), 'nothing downloaded');
    const r = w.director.manifests.at(-1)!.signed.installationResult!;
    assert.ok(r.ecus.every((e) => e.code === 'DEVICE_MISMATCH'));
  });

  it('refuses an image above the device size cap before downloading it', async () => {
    const w = await world({ maxImageBytes: 60_000 });
    assignAll(w);
    const out = await w.agent.checkOnce();
    assert.equal(out.result, 'failure');
    assert.equal(out.failure?.code, 'IMAGE_TOO_LARGE');
    assert.deepEqual(out.failure?.fields, { target: 'gw.bin', length: 70_000, limit: 60_000 });
    assert.ok(!w.imageServer.requests.some((r) => r.path.startsWith('targets/')), 'nothing downloaded');
  });

  it('refuses expired image repository metadata', async () => {
    const w = await world({ imageNow: new Date(Date.now() - 10 * 86400_000) });
    assignAll(w);
    const out = await w.agent.checkOnce();
    assert.equal(out.result, 'failure');
    assert.equal(out.failure?.code, 'EXPIRED_METADATA');
    assert.equal(out.failure?.state, 'checkingImages');
    const r = w.director.manifests.at(-1)!.signed.installationResult!;
    assert.equal(r.success, false);
    assert.ok(r.ecus.every((e) => e.code === 'FREEZE'));
  });
});

describe('Agent.close', () => {
  it('right after run(): waits for the control socket run() is opening, and closes it', async () => {
    const w = await world();
    const running = w.agent.run();
    await w.agent.close();
    await running;
    const path = controlSocketPath(w.config.storageDir);
    await assert.rejects(new Promise((resolve, reject) => connect(path).once('connect', resolve).once('error', reject)), 'nothing answers on the control socket');
  });

  it('called again while closing, with abandonCycle: cuts short the cycle the first close waits for; each ECU driver closes once', { timeout: 10_000 }, async () => {
    let gwReceived = 0;
    const w = await world({ onProgress: (p) => void (p.ecuSerial === 'gw-1' && p.state === 'downloading' && (gwReceived = p.done)) });
    const closes = new Map<string, number>();
    for (const { ecu } of w.secondaries) {
      const close = ecu.close.bind(ecu);
      ecu.close = () => (closes.set(ecu.ecuSerial, (closes.get(ecu.ecuSerial) ?? 0) + 1), close());
    }
    assignAll(w);
    w.imageServer.stalls.add(`targets/${w.targets['gw.bin']!.hashes.sha256}.gw.bin`);
    const cycle = w.agent.checkOnce();
    for (const end = performance.now() + 10_000; gwReceived < 35_000; await new Promise((r) => setTimeout(r, 5))) {
      assert.ok(performance.now() < end, `gw.bin: ${gwReceived} bytes received`);
    }
    const graceful = w.agent.close();
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    await Promise.all([graceful, w.agent.close({ abandonCycle: true }), w.agent.close()]);
    assert.ok(performance.now() - t0 < 1000, 'the first close ended with the cycle it was waiting for');
    await assert.rejects(cycle, CycleAbandonedError);
    assert.deepEqual(Object.fromEntries(closes), { 'ecu-brake': 1, 'ecu-door': 1 });
  });

  // Waiting for the cycle instead would take the stalled request's deadline (a minute) and its retries.
  it('with abandonCycle: cuts the cycle short in its download, persists nothing after that state, and the next start resumes it', { timeout: 10_000 }, async () => {
    let gwReceived = 0;
    const w = await world({ onProgress: (p) => void (p.ecuSerial === 'gw-1' && p.state === 'downloading' && (gwReceived = p.done)) });
    assignAll(w);
    // gw.bin is downloaded last; half of it arrives, then nothing until the connection closes.
    const gw = `targets/${w.targets['gw.bin']!.hashes.sha256}.gw.bin`;
    w.imageServer.stalls.add(gw);
    const cycle = w.agent.checkOnce();
    for (const end = performance.now() + 10_000; gwReceived < 35_000; await new Promise((r) => setTimeout(r, 5))) {
      assert.ok(performance.now() < end, `gw.bin: ${gwReceived} bytes received`);
    }
    const closing = performance.now();
    await w.agent.close({ abandonCycle: true });
    const closeMs = performance.now() - closing;
    assert.ok(closeMs < 1000, `close took ${closeMs} ms`);
    await assert.rejects(cycle, (e: unknown) => e instanceof CycleAbandonedError && e.state === 'downloading');

    // The device as a power loss in the download leaves it: the next start resumes the cycle.
    w.imageServer.stalls.clear();
    const again = await createAgent(w.config, { secondaries: w.secondaries.map((s) => s.ecu), passphrase: 'pw', logger: pino({ level: process.env.LOG ?? 'silent' }) });
    closers.push(() => again.close());
    assert.equal((await again.status()).state, 'downloading');
    assert.equal(w.director.manifests.filter((m) => m.signed.installationResult).length, 0, 'no result was reported');
    const out = await again.checkOnce();
    assert.equal(out.result, 'success', JSON.stringify(out.failure));
    assert.ok(w.imageServer.requests.some((r) => r.path === gw && r.range === 'bytes=35000-'), 'the download resumed after the bytes it had');
    assert.deepEqual(readFileSync(join(w.dir, 'slot-b')), w.data['gw.bin']);
  });
});
