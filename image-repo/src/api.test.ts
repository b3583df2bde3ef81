/**
 * The programmatic API the demo uses, in one process: init, a server with the
 * online passphrase init generated, add-target and a supplier delegation through the functions, and
 * the server serving the result.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { pino } from 'pino';
import {
  addTarget,
  delegate,
  generateKeyFile,
  initRepository,
  signDelegated,
  startImageRepoServer,
  status,
  WorkspaceError,
  type ImageRepoServer,
} from './index.ts';

describe('programmatic API', () => {
  let dir: string;
  let server: ImageRepoServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'upfleet-repo-api-'));
    initRepository({ dir, passphrase: 'operator' });
    server = await startImageRepoServer({ dir, port: 0, host: '127.0.0.1', token: 't', logger: pino({ level: 'silent' }) });
  });

  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('publishes a top-level target and a supplier target that the server serves byte-exact', async () => {
    const brake = randomBytes(4096);
    const camera = randomBytes(2048);
    writeFileSync(join(dir, 'brake.bin'), brake);
    writeFileSync(join(dir, 'camera.bin'), camera);
    const ctx = { dir, passphrase: 'operator' };
    const added = await addTarget(ctx, { file: join(dir, 'brake.bin'), name: 'brake.bin', hardwareIds: ['brake'], version: '1.0.0' });
    assert.equal(added.version, 2);

    const keyFile = join(dir, 'acme.key.json');
    const key = generateKeyFile(keyFile, 'supplier');
    await delegate(ctx, { role: 'acme', paths: ['acme/*'], hardwareIds: ['camera'], keys: [key], threshold: 1 });
    const signed = await signDelegated(
      { dir, passphrase: 'supplier', remote: { url: server.url, token: 't' } },
      { role: 'acme', keyFiles: [keyFile], add: [{ file: join(dir, 'camera.bin'), name: 'acme/camera.bin', hardwareIds: ['camera'], version: '2.0.0' }] },
    );
    assert.equal(signed.version, 1);

    for (const [name, data] of [['brake.bin', brake], ['acme/camera.bin', camera]] as const) {
      const hash = createHash('sha256').update(data).digest('hex');
      const slash = name.lastIndexOf('/');
      const res = await fetch(`${server.url}/targets/${name.slice(0, slash + 1)}${hash}.${name.slice(slash + 1)}`);
      assert.equal(res.status, 200, name);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), data);
    }
    const s = await status({ dir, passphrase: () => assert.fail('status decrypts nothing') });
    assert.deepEqual(s.targets.map((t) => [t.name, t.role]), [['brake.bin', 'targets'], ['acme/camera.bin', 'acme']]);
  });

  it('a server directory with only the online keys and the working copy bootstraps its index', async () => {
    const serverDir = mkdtempSync(join(tmpdir(), 'upfleet-repo-api-server-'));
    const fresh = mkdtempSync(join(tmpdir(), 'upfleet-repo-api-fresh-'));
    try {
      initRepository({ dir: fresh, passphrase: 'operator', onlinePassphrase: 'server' });
      mkdirSync(join(serverDir, 'keys'));
      cpSync(join(fresh, 'keys', 'online'), join(serverDir, 'keys', 'online'), { recursive: true });
      cpSync(join(fresh, 'metadata'), join(serverDir, 'metadata'), { recursive: true });
      copyFileSync(join(fresh, 'upfleet-repo.json'), join(serverDir, 'upfleet-repo.json'));
      const remoteServer = await startImageRepoServer({ dir: serverDir, token: 't', onlinePassphrase: 'server', logger: pino({ level: 'silent' }) });
      try {
        const root = await (await fetch(`${remoteServer.url}/metadata/1.root.json`)).text();
        assert.equal(JSON.parse(root).signed.version, 1);
        const health = (await (await fetch(`${remoteServer.url}/healthz`)).json()) as { versions: Record<string, number> };
        assert.deepEqual(health.versions, { root: 1, snapshot: 1, targets: 1, timestamp: 1 });
        assert.deepEqual(readdirSync(join(serverDir, 'keys')), ['online']);
      } finally {
        await remoteServer.close();
      }
    } finally {
      rmSync(serverDir, { recursive: true, force: true });
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  it('refuses to work on a directory that is not a repository', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'upfleet-repo-api-empty-'));
    try {
      await assert.rejects(status({ dir: empty, passphrase: 'x' }), WorkspaceError);
      await assert.rejects(startImageRepoServer({ dir: empty, token: 't', onlinePassphrase: 'x' }), WorkspaceError);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('refuses a malformed settings file with a typed error naming it, and changes nothing', async () => {
    const broken = mkdtempSync(join(tmpdir(), 'upfleet-repo-api-settings-'));
    try {
      const cases: Array<[string, RegExp]> = [
        ['{bad', /upfleet-repo\.json: not JSON/],
        ['[]', /upfleet-repo\.json: not a JSON object/],
        ['{"format":"other/9"}', /unknown format "other\/9"/],
        ['{"expiries":{"timestamp":"x"}}', /expiries\.timestamp must be a whole number of seconds >= 1/],
        ['{"expiries":{"timestamp":0}}', /expiries\.timestamp must be a whole number of seconds >= 1/],
        ['{"expiries":{"timestmap":60}}', /expiries\.timestmap: not a role/],
      ];
      for (const [text, message] of cases) {
        writeFileSync(join(broken, 'upfleet-repo.json'), text);
        await assert.rejects(status({ dir: broken, passphrase: 'x' }), (e: unknown) => e instanceof WorkspaceError && message.test(e.message));
        await assert.rejects(startImageRepoServer({ dir: broken, token: 't', onlinePassphrase: 'x' }), WorkspaceError);
        assert.deepEqual(readdirSync(broken), ['upfleet-repo.json']);
      }
    } finally {
      rmSync(broken, { recursive: true, force: true });
    }
  });
});
