/**
 * The image cache holds an image only until its ECU runs it: after a
 * successful update the cache is empty; a failed download that will be
 * retried keeps its partial file across a restart and the retry resumes it;
 * a start-up drops images no plan needs. Real loopback repositories.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { RepositoryBuilder } from '@upfleet/core';
import { createAgent, type Agent } from './agent.ts';
import { parseConfig } from './config.ts';
import { BuilderDirector } from './testing/builder-director.ts';
import { serveFiles } from './testing/static-server.ts';

const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of closers.reverse()) await c().catch(() => undefined);
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

describe('image cache clean-up', () => {
  it('deletes an installed image, keeps a retryable partial download (resumed after a restart), prunes leftovers at start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'upfleet-cleanup-'));
    dirs.push(dir);
    const now = new Date();
    const repo = new RepositoryBuilder({ now });
    const v2 = randomBytes(60_000);
    const v3 = randomBytes(200_000);
    const t2 = repo.addTarget('gw-2.bin', v2, { custom: { hardwareIds: ['gw'], releaseCounter: 2 } });
    const t3 = repo.addTarget('gw-3.bin', v3, { custom: { hardwareIds: ['gw'], releaseCounter: 3 } });
    repo.commit();
    const imageServer = await serveFiles(() => repo.files);
    closers.push(() => imageServer.close());
    const director = new BuilderDirector('car-c', now);
    await director.start();
    closers.push(() => director.close());
    writeFileSync(join(dir, 'director-root.json'), director.repo.bytes('root'));
    writeFileSync(join(dir, 'image-root.json'), repo.bytes('root'));
    const config = parseConfig({
      deviceId: 'car-c', directorUrl: director.url, imageRepoUrl: imageServer.url,
      storageDir: join(dir, 'var'), keyPath: join(dir, 'var', 'primary.key'), pollIntervalSeconds: 60,
      provisioning: { directorRoot: join(dir, 'director-root.json'), imageRepoRoot: join(dir, 'image-root.json'), token: 'prov-token' },
      limits: { minBytesPerSecond: 0, downloadAttempts: 1 },
      ecus: { primary: { serial: 'gw-1', hardwareId: 'gw', installCommand: 'true' } },
    });
    const open = async (): Promise<Agent> => {
      const a = await createAgent(config, { passphrase: 'pw', secondaries: [], logger: pino({ level: process.env.LOG ?? 'silent' }) });
      closers.push(() => a.close());
      return a;
    };
    const cacheDir = join(config.storageDir, 'images');
    let agent = await open();
    await agent.provision();

    // 1. A successful update leaves no image behind.
    director.assign([{ ecuSerial: 'gw-1', hardwareId: 'gw', name: 'gw-2.bin', info: t2, order: 1 }]);
    const ok = await agent.checkOnce();
    assert.equal(ok.result, 'success', JSON.stringify(ok.failure));
    assert.deepEqual(readdirSync(cacheDir), []);

    // 2. A download cut half-way fails (retryable): its partial file stays.
    const path = [...repo.files.keys()].find((k) => k.startsWith('targets/') && k.endsWith('.gw-3.bin'))!;
    imageServer.overrides.set(path, v3.subarray(0, 80_000));
    director.assign([{ ecuSerial: 'gw-1', hardwareId: 'gw', name: 'gw-3.bin', info: t3, order: 1 }]);
    const cut = await agent.checkOnce();
    assert.equal(cut.result, 'failure');
    assert.equal(cut.failure?.code, 'DOWNLOAD');
    const partial = join(cacheDir, `${t3.hashes.sha256}.partial`);
    assert.equal(statSync(partial).size, 80_000);

    // 3. A restart keeps the partial file (the retry needs it) and drops a leftover image.
    const leftover = join(cacheDir, `${'ab'.repeat(32)}.image`);
    writeFileSync(leftover, randomBytes(1000));
    await agent.close();
    agent = await open();
    assert.equal(existsSync(leftover), false, 'an image no plan needs is pruned at start');
    assert.equal(statSync(partial).size, 80_000, 'the retryable partial download survives the restart');

    // 4. The retry resumes from the partial file, and the installed image is deleted.
    imageServer.overrides.delete(path);
    imageServer.requests.length = 0;
    const done = await agent.checkOnce();
    assert.equal(done.result, 'success', JSON.stringify(done.failure));
    assert.deepEqual(imageServer.requests.filter((r) => r.path === path).map((r) => r.range), ['bytes=80000-']);
    assert.deepEqual(readdirSync(cacheDir), []);
  });
});
