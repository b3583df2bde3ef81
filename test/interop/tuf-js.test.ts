/**
 * Interoperability: tuf-js (an independent TUF client) reads a repository built
 * by core's RepositoryBuilder, served over loopback HTTP, and downloads targets
 * byte-exact, top-level and through a delegated role, across a root rotation.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Updater } from 'tuf-js';
import { RepositoryBuilder, Ed25519Signer, utf8 } from '@upfleet/core';
import { serveFiles, type StaticServer } from './static-server.ts';

describe('tuf-js reading a RepositoryBuilder repository', () => {
  let dir: string;
  let server: StaticServer;
  let repo: RepositoryBuilder;
  const firmware = utf8('top-level firmware image\n');
  const supplierImage = new Uint8Array(4096).map((_, i) => (i * 31) & 0xff);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'upfleet-interop-'));
    repo = new RepositoryBuilder({ now: new Date() });
    repo.addTarget('fw.bin', firmware, { custom: { hardwareIds: ['ecu-a'], releaseCounter: 1, version: '1.0.0' } });
    repo.delegate('targets', { name: 'supplier', paths: ['supplier/*'], terminating: true });
    repo.addTarget('supplier/image.bin', supplierImage, { role: 'supplier' });
    server = await serveFiles(repo.commit());
  });

  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function tufJs(name: string): Updater {
    const metadataDir = join(dir, name, 'metadata');
    const targetDir = join(dir, name, 'targets');
    mkdirSync(metadataDir, { recursive: true });
    mkdirSync(targetDir, { recursive: true });
    writeFileSync(join(metadataDir, 'root.json'), repo.files.get('metadata/1.root.json')!);
    return new Updater({ metadataDir, metadataBaseUrl: `${server.url}metadata`, targetDir, targetBaseUrl: `${server.url}targets` });
  }

  it('refreshes and downloads a top-level target byte-exact', async () => {
    const updater = tufJs('top');
    await updater.refresh();
    const info = await updater.getTargetInfo('fw.bin');
    assert.ok(info);
    assert.deepEqual(info.custom, { hardwareIds: ['ecu-a'], releaseCounter: 1, version: '1.0.0' });
    const path = await updater.downloadTarget(info, join(dir, 'top', 'fw.bin'));
    assert.deepEqual(new Uint8Array(readFileSync(path)), firmware);
  });

  it('downloads a target through a delegated role byte-exact', async () => {
    const updater = tufJs('delegated');
    await updater.refresh();
    const info = await updater.getTargetInfo('supplier/image.bin');
    assert.ok(info);
    const path = await updater.downloadTarget(info, join(dir, 'delegated', 'image.bin'));
    assert.deepEqual(new Uint8Array(readFileSync(path)), supplierImage);
    assert.ok(server.requests.includes('metadata/1.supplier.json'));
  });

  it('follows a root rotation signed by the old and the new keys', async () => {
    const updater = tufJs('rotated');
    repo.rotateKeys('root', [Ed25519Signer.generate()]);
    repo.rotateKeys('timestamp', [Ed25519Signer.generate()]);
    repo.addTarget('fw2.bin', utf8('second image'));
    server.files = repo.commit();
    await updater.refresh();
    const info = await updater.getTargetInfo('fw2.bin');
    assert.ok(info);
    const path = await updater.downloadTarget(info, join(dir, 'rotated', 'fw2.bin'));
    assert.equal(readFileSync(path, 'utf8'), 'second image');
    assert.ok(server.requests.includes('metadata/2.root.json'));
  });

  it('refuses a target whose served bytes were tampered with', async () => {
    const updater = tufJs('tampered');
    await updater.refresh();
    const info = await updater.getTargetInfo('fw.bin');
    assert.ok(info);
    const files = new Map(server.files);
    for (const path of files.keys()) if (path.startsWith('targets/') && path.endsWith('.fw.bin')) files.set(path, utf8('top-level malware image\n!'));
    server.files = files;
    try {
      await assert.rejects(updater.downloadTarget(info, join(dir, 'tampered', 'fw.bin')));
    } finally {
      server.files = repo.files;
    }
  });
});
