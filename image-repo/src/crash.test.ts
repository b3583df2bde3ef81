/**
 * Crash safety: `upfleet-repo serve` as a child process is SIGKILLed in the
 * middle of a publish (inside the SQLite transaction, just before COMMIT, via
 * the fault-injection pause) and in the middle of an image upload. After a
 * restart on the same directory the server serves the old version, whole and
 * consistent (a TUF client refreshes against it), and the same publish then
 * succeeds.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { Updater } from 'tuf-js';
import { Metadata, TargetFile, type Targets } from '@upfleet/core';
import { initRepository, type InitResult } from './operations.ts';
import { killServe, startServe as startServe_, type ServeChild } from './testing/serve-child.ts';

const TOKEN = 'crash-token';

/** serve on DIR, given only the online passphrase (DIR/keys/online/passphrase, which init wrote). */
function startServe(dir: string, env: Record<string, string> = {}): Promise<ServeChild> {
  return startServe_(['--dir', dir], { UPFLEET_PASSPHRASE: undefined, UPFLEET_REPO_TOKEN: TOKEN, ...env });
}

describe('SIGKILL during a publish or an upload', () => {
  let work: string;
  let dir: string;
  let repo: InitResult;
  let server: ServeChild | undefined;
  const image = randomBytes(30_000);
  const sha256 = createHash('sha256').update(image).digest('hex');

  async function versions(url: string): Promise<Record<string, number>> {
    return ((await (await fetch(`${url}/healthz`)).json()) as { versions: Record<string, number> }).versions;
  }

  async function nextTargets(url: string): Promise<Metadata<Targets>> {
    const v = await versions(url);
    const md = Metadata.fromBytes(new Uint8Array(await (await fetch(`${url}/metadata/${v.targets}.targets.json`)).arrayBuffer()), 'targets');
    md.signatures.clear();
    md.signed.version += 1;
    md.signed.targets['fw.bin'] = TargetFile.fromData(image, ['sha256', 'sha512'], { hardwareIds: ['brake'], releaseCounter: 1, version: '1.0.0' });
    md.sign(repo.signers.targets);
    return md;
  }

  function publish(url: string, md: Metadata<Targets>): Promise<Response> {
    return fetch(`${url}/api/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ targets: md.toJSON() }),
    });
  }

  /** A fresh tuf-js client that trusts root 1 refreshes: the served version is whole. */
  async function tufRefresh(url: string): Promise<Updater> {
    const base = mkdtempSync(join(work, 'client-'));
    mkdirSync(join(base, 'targets'));
    copyFileSync(join(dir, 'metadata', '1.root.json'), join(base, 'root.json'));
    const updater = new Updater({ metadataDir: base, targetDir: join(base, 'targets'), metadataBaseUrl: `${url}/metadata`, targetBaseUrl: `${url}/targets` });
    await updater.refresh();
    return updater;
  }

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'upfleet-repo-crash-'));
    dir = join(work, 'repo');
    repo = initRepository({ dir, passphrase: 'pw' });
  });

  after(async () => {
    if (server) await killServe(server);
    rmSync(work, { recursive: true, force: true });
  });

  it('a kill in the middle of an upload leaves no temp file and nothing published', async () => {
    server = await startServe(dir);
    const before = await versions(server.url);
    const req = request(`${server.url}/api/v1/images/fw.bin`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}`, 'content-length': 1_000_000 } });
    req.on('error', () => undefined);
    req.write(randomBytes(200_000));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(readdirSync(join(dir, 'server', 'blobs', 'tmp')).length, 1, 'the upload is in progress');
    await killServe(server);
    req.destroy();

    server = await startServe(dir);
    assert.deepEqual(readdirSync(join(dir, 'server', 'blobs', 'tmp')), []);
    assert.deepEqual(await versions(server.url), before);
  });

  it('a kill just before COMMIT leaves the old version served, and the publish then succeeds', async () => {
    if (server) await killServe(server);
    server = await startServe(dir, { UPFLEET_REPO_FAULT_PAUSE_BEFORE_COMMIT_MS: '60000' });
    const upload = await fetch(`${server.url}/api/v1/images/fw.bin`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}` }, body: image });
    assert.equal(upload.status, 201);
    const before = await versions(server.url);
    const timestampBefore = Buffer.from(await (await fetch(`${server.url}/metadata/timestamp.json`)).arrayBuffer());
    const md = await nextTargets(server.url);

    const inFlight = publish(server.url, md).then(
      () => 'answered',
      () => 'connection lost',
    );
    await server.waitForStderr(/fault injection: pausing before commit/);
    await killServe(server);
    assert.equal(await inFlight, 'connection lost');

    server = await startServe(dir);
    assert.deepEqual(await versions(server.url), before);
    assert.deepEqual(Buffer.from(await (await fetch(`${server.url}/metadata/timestamp.json`)).arrayBuffer()), timestampBefore);
    assert.equal((await fetch(`${server.url}/metadata/${before.targets + 1}.targets.json`)).status, 404);
    assert.equal((await fetch(`${server.url}/metadata/${before.snapshot + 1}.snapshot.json`)).status, 404);
    assert.equal((await fetch(`${server.url}/targets/${sha256}.fw.bin`)).status, 404);
    const oldClient = await tufRefresh(server.url);
    assert.equal(await oldClient.getTargetInfo('fw.bin'), undefined);

    const retried = await publish(server.url, md);
    assert.equal(retried.status, 200, await retried.clone().text());
    assert.equal((await versions(server.url)).targets, before.targets + 1);
    const newClient = await tufRefresh(server.url);
    const info = await newClient.getTargetInfo('fw.bin');
    assert.ok(info);
    assert.deepEqual(readFileSync(await newClient.downloadTarget(info)), image);
  });
});
