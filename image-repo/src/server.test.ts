/**
 * The server on loopback, in-process: the static layout, Range/ETag/HEAD, the
 * upload API, and every refusal (each one asserts its error code and that the
 * published versions did not change).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { pino } from 'pino';
import { Delegations, DelegatedRole, Ed25519Signer, expiresIn, Metadata, TargetFile, Targets, type Root, type Signer } from '@upfleet/core';
import { initRepository, type InitResult } from './operations.ts';
import { MemoryKeyring } from './online-keys.ts';
import { startImageRepoServer, type ImageRepoServer } from './server.ts';

const TOKEN = 'test-token';
const silent = pino({ level: 'silent' });

interface Reply {
  status: number;
  headers: Headers;
  body: Buffer;
  json: any;
}

async function http(url: string, init: RequestInit = {}): Promise<Reply> {
  const res = await fetch(url, init);
  const body = Buffer.from(await res.arrayBuffer());
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, body, json };
}

const auth = { authorization: `Bearer ${TOKEN}` };

describe('image repository server', () => {
  let dir: string;
  let repo: InitResult;
  let server: ImageRepoServer;
  const supplier = Ed25519Signer.generate();
  const image = randomBytes(50_000);
  const sha256 = createHash('sha256').update(image).digest('hex');
  const sha512 = createHash('sha512').update(image).digest('hex');

  async function versions(): Promise<Record<string, number>> {
    return (await http(`${server.url}/healthz`)).json.versions;
  }

  async function currentTargets(): Promise<Metadata<Targets>> {
    const v = await versions();
    return Metadata.fromBytes((await http(`${server.url}/metadata/${v.targets}.targets.json`)).body, 'targets');
  }

  /** The next top-level targets version, changed by `mutate`, signed by `signers` (default: the targets key). */
  async function nextTargets(mutate: (t: Targets) => void, signers: Signer[] = [repo.signers.targets]): Promise<Metadata<Targets>> {
    const md = await currentTargets();
    md.signatures.clear();
    md.signed.version += 1;
    mutate(md.signed);
    for (const s of signers) md.sign(s);
    return md;
  }

  function imageTarget(hardwareIds = ['brake'], data: Uint8Array = image): TargetFile {
    return TargetFile.fromData(data, ['sha256', 'sha512'], { hardwareIds, releaseCounter: 1, version: '1.0.0' });
  }

  async function publish(body: unknown, headers: Record<string, string> = auth): Promise<Reply> {
    return http(`${server.url}/api/v1/publish`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  }

  async function upload(name: string, data: Uint8Array, headers: Record<string, string> = auth): Promise<Reply> {
    return http(`${server.url}/api/v1/images/${name}`, { method: 'PUT', headers, body: data });
  }

  /** Asserts the refusal's status and code, and that nothing was published. */
  async function assertRefused(reply: Reply, status: number, code: string, before: Record<string, number>): Promise<void> {
    assert.equal(reply.status, status, JSON.stringify(reply.json));
    assert.equal(reply.json.error.code, code);
    assert.equal(typeof reply.json.error.message, 'string');
    assert.deepEqual(await versions(), before);
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'upfleet-repo-server-'));
    repo = initRepository({ dir, passphrase: 'pw' });
    server = await startImageRepoServer({
      dir, port: 0, host: '127.0.0.1', token: TOKEN, logger: silent,
      keyring: new MemoryKeyring([repo.signers.snapshot, repo.signers.timestamp]),
      maxUploadBytes: 200_000,
    });
    assert.equal((await upload('brake-1.0.bin', image)).status, 201);
    const targets = await nextTargets((t) => {
      t.targets['brake-1.0.bin'] = imageTarget();
      t.delegations = new Delegations({ [supplier.keyid]: supplier.key }, [
        new DelegatedRole('acme', [supplier.keyid], 1, false, ['acme/*'], undefined, ['camera']),
      ]);
    });
    const reply = await publish({ targets: targets.toJSON() });
    assert.equal(reply.status, 200, JSON.stringify(reply.json));
  });

  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('static layout', () => {
    it('serves versioned metadata, timestamp.json and root.json, and 404 for anything else', async () => {
      const v = await versions();
      const ts = Metadata.fromBytes((await http(`${server.url}/metadata/timestamp.json`)).body, 'timestamp');
      assert.equal(ts.signed.version, v.timestamp);
      assert.equal(ts.signed.snapshotMeta.version, v.snapshot);
      const snap = Metadata.fromBytes((await http(`${server.url}/metadata/${v.snapshot}.snapshot.json`)).body, 'snapshot');
      assert.equal(snap.signed.meta['targets.json']!.version, v.targets);
      assert.deepEqual((await http(`${server.url}/metadata/root.json`)).body, (await http(`${server.url}/metadata/1.root.json`)).body);
      assert.equal((await http(`${server.url}/metadata/${v.targets + 1}.targets.json`)).status, 404);
      assert.equal((await http(`${server.url}/metadata/snapshot.json`)).status, 404);
      const missing = await http(`${server.url}/nothing`);
      assert.equal(missing.status, 404);
      assert.equal(missing.json.error.code, 'NOT_FOUND');
    });

    it('serves a target under its sha256 and sha512 names, byte-exact, with HEAD and ETag', async () => {
      for (const hash of [sha256, sha512]) {
        const r = await http(`${server.url}/targets/${hash}.brake-1.0.bin`);
        assert.equal(r.status, 200);
        assert.deepEqual(r.body, image);
      }
      const head = await http(`${server.url}/targets/${sha256}.brake-1.0.bin`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(image.length));
      assert.equal(head.headers.get('etag'), `"${sha256}"`);
      assert.equal(head.headers.get('accept-ranges'), 'bytes');
      assert.equal(head.body.length, 0);
      const cached = await http(`${server.url}/targets/${sha256}.brake-1.0.bin`, { headers: { 'if-none-match': `"${sha256}"` } });
      assert.equal(cached.status, 304);
      // The right hash under another name is not a published target.
      assert.equal((await http(`${server.url}/targets/${sha256}.other.bin`)).status, 404);
    });

    it('answers Range requests with 206 and the exact bytes', async () => {
      const url = `${server.url}/targets/${sha256}.brake-1.0.bin`;
      const cases: Array<[string, number, number]> = [['bytes=100-199', 100, 199], ['bytes=49000-', 49000, 49999], ['bytes=-10', 49990, 49999], ['bytes=49990-99999', 49990, 49999]];
      for (const [range, start, end] of cases) {
        const r = await http(url, { headers: { range } });
        assert.equal(r.status, 206, range);
        assert.equal(r.headers.get('content-range'), `bytes ${start}-${end}/${image.length}`);
        assert.deepEqual(r.body, image.subarray(start, end + 1));
      }
      const stale = await http(url, { headers: { range: 'bytes=0-9', 'if-range': '"other"' } });
      assert.equal(stale.status, 200);
      assert.equal(stale.body.length, image.length);
    });

    it('refuses a Range outside the file with 416', async () => {
      for (const range of [`bytes=${image.length}-`, 'bytes=999999-1000000', 'bytes=-0']) {
        const r = await http(`${server.url}/targets/${sha256}.brake-1.0.bin`, { headers: { range } });
        assert.equal(r.status, 416, range);
        assert.equal(r.headers.get('content-range'), `bytes */${image.length}`);
        assert.equal(r.json.error.code, 'RANGE_NOT_SATISFIABLE');
      }
    });
  });

  describe('upload API refusals', () => {
    it('refuses uploads and publishes without the right bearer token', async () => {
      const before = await versions();
      await assertRefused(await upload('x.bin', randomBytes(10), {}), 401, 'UNAUTHORIZED', before);
      await assertRefused(await upload('x.bin', randomBytes(10), { authorization: 'Bearer wrong' }), 401, 'UNAUTHORIZED', before);
      const targets = await nextTargets(() => {});
      await assertRefused(await publish({ targets: targets.toJSON() }, { authorization: `Bearer ${TOKEN}x` }), 401, 'UNAUTHORIZED', before);
    });

    it('refuses an oversized upload, declared or streamed, and keeps no temp file', async () => {
      const before = await versions();
      await assertRefused(await upload('big.bin', randomBytes(200_001)), 413, 'UPLOAD_TOO_LARGE', before);
      const chunks = async function* () {
        for (let i = 0; i < 30; i++) yield randomBytes(10_000);
      };
      const streamed = await http(`${server.url}/api/v1/images/big.bin`, {
        method: 'PUT', headers: auth, body: ReadableStream.from(chunks()) as unknown as RequestInit['body'], duplex: 'half',
      } as RequestInit);
      await assertRefused(streamed, 413, 'UPLOAD_TOO_LARGE', before);
      assert.deepEqual(readdirSync(join(dir, 'server', 'blobs', 'tmp')), []);
    });

    it('refuses path-traversal names in uploads, metadata and downloads', async () => {
      const before = await versions();
      await assertRefused(await upload('..%2F..%2Fetc%2Fpasswd', randomBytes(10)), 400, 'BAD_NAME', before);
      await assertRefused(await upload('a%2F.%2Fb', randomBytes(10)), 400, 'BAD_NAME', before);
      const evil = await nextTargets((t) => {
        t.targets['../../evil.bin'] = imageTarget();
      });
      await assertRefused(await publish({ targets: evil.toJSON() }), 400, 'BAD_NAME', before);
      assert.equal((await http(`${server.url}/targets/${sha256}.%2e%2e%2f%2e%2e%2fetc%2fpasswd`)).status, 404);
    });

    it('refuses targets signed by a key root does not list', async () => {
      const before = await versions();
      const forged = await nextTargets((t) => {
        t.targets['brake-2.0.bin'] = imageTarget();
      }, [Ed25519Signer.generate()]);
      await assertRefused(await publish({ targets: forged.toJSON() }), 400, 'UNSIGNED_METADATA', before);
      const tampered = await nextTargets(() => {});
      tampered.signed.targets['brake-2.0.bin'] = imageTarget();
      await assertRefused(await publish({ targets: tampered.toJSON() }), 400, 'UNSIGNED_METADATA', before);
    });

    it('refuses a targets version that does not increase', async () => {
      const before = await versions();
      const same = await nextTargets((t) => {
        t.version -= 1;
      });
      await assertRefused(await publish({ targets: same.toJSON() }), 409, 'BAD_VERSION', before);
    });

    it('refuses targets whose length or hashes do not match an uploaded image', async () => {
      const before = await versions();
      const missing = await nextTargets((t) => {
        t.targets['new.bin'] = imageTarget(['brake'], randomBytes(100));
      });
      await assertRefused(await publish({ targets: missing.toJSON() }), 409, 'MISSING_IMAGE', before);
      const badLength = await nextTargets((t) => {
        t.targets['new.bin'] = new TargetFile(image.length + 1, { sha256, sha512 }, { hardwareIds: ['brake'], releaseCounter: 0, version: '1' });
      });
      await assertRefused(await publish({ targets: badLength.toJSON() }), 400, 'LENGTH_OR_HASH_MISMATCH', before);
      const badSha512 = await nextTargets((t) => {
        t.targets['new.bin'] = new TargetFile(image.length, { sha256, sha512: '00'.repeat(64) }, { hardwareIds: ['brake'], releaseCounter: 0, version: '1' });
      });
      await assertRefused(await publish({ targets: badSha512.toJSON() }), 400, 'LENGTH_OR_HASH_MISMATCH', before);
      const noCustom = await nextTargets((t) => {
        t.targets['new.bin'] = new TargetFile(image.length, { sha256, sha512 });
      });
      await assertRefused(await publish({ targets: noCustom.toJSON() }), 400, 'BAD_TARGET', before);
    });

    it('refuses a body that is not a publish request', async () => {
      const before = await versions();
      const r = await http(`${server.url}/api/v1/publish`, { method: 'POST', headers: auth, body: '{not json' });
      await assertRefused(r, 400, 'BAD_REQUEST', before);
      await assertRefused(await publish({}), 400, 'BAD_REQUEST', before);
      await assertRefused(await publish({ targets: { signed: {}, signatures: [] } }), 400, 'MALFORMED_METADATA', before);
      await assertRefused(await http(`${server.url}/api/v1/publish`, { method: 'GET', headers: auth }), 405, 'METHOD_NOT_ALLOWED', before);
    });
  });

  describe('delegated roles', () => {
    function acme(mutate: (t: Targets) => void, signer: Signer = supplier, version = 1): Metadata<Targets> {
      const md = new Metadata(new Targets(version, expiresIn(new Date(), 86400), {}));
      mutate(md.signed);
      md.sign(signer);
      return md;
    }

    it('publishes a supplier role signed by its own key, and refuses abuse of the delegation', async () => {
      const camera = randomBytes(3000);
      assert.equal((await upload('acme/cam.bin', camera)).status, 201);
      let before = await versions();
      const outside = acme((t) => {
        t.targets['other/cam.bin'] = imageTarget(['camera'], camera);
      });
      await assertRefused(await publish({ delegated: { acme: outside.toJSON() } }), 403, 'DELEGATION_VIOLATION', before);
      const wrongHardware = acme((t) => {
        t.targets['acme/cam.bin'] = imageTarget(['brake'], camera);
      });
      await assertRefused(await publish({ delegated: { acme: wrongHardware.toJSON() } }), 403, 'DELEGATION_VIOLATION', before);
      const wrongKey = acme((t) => {
        t.targets['acme/cam.bin'] = imageTarget(['camera'], camera);
      }, repo.signers.targets);
      await assertRefused(await publish({ delegated: { acme: wrongKey.toJSON() } }), 400, 'UNSIGNED_METADATA', before);
      const undelegated = acme(() => {});
      await assertRefused(await publish({ delegated: { nobody: undelegated.toJSON() } }), 403, 'DELEGATION_VIOLATION', before);

      const good = acme((t) => {
        t.targets['acme/cam.bin'] = imageTarget(['camera'], camera);
      });
      const ok = await publish({ delegated: { acme: good.toJSON() } });
      assert.equal(ok.status, 200, JSON.stringify(ok.json));
      assert.equal(ok.json.versions.acme, 1);
      assert.equal(ok.json.versions.snapshot, before.snapshot + 1);
      const hash = createHash('sha256').update(camera).digest('hex');
      assert.deepEqual((await http(`${server.url}/targets/acme/${hash}.cam.bin`)).body, camera);
      assert.deepEqual((await http(`${server.url}/targets/${hash}.acme/cam.bin`)).body, camera);
      const snap = Metadata.fromBytes((await http(`${server.url}/metadata/${ok.json.versions.snapshot}.snapshot.json`)).body, 'snapshot');
      assert.equal(snap.signed.meta['acme.json']!.version, 1);

      before = await versions();
      await assertRefused(await publish({ delegated: { acme: good.toJSON() } }), 409, 'BAD_VERSION', before);
    });
  });

  describe('root updates', () => {
    async function nextRoot(mutate: (r: Root) => void, signers: Signer[]): Promise<Metadata<Root>> {
      const md = Metadata.fromBytes((await http(`${server.url}/metadata/root.json`)).body, 'root');
      md.signatures.clear();
      md.signed.version += 1;
      mutate(md.signed);
      for (const s of signers) md.sign(s);
      return md;
    }

    it('refuses a root not signed by the previous root keys, or skipping a version', async () => {
      const before = await versions();
      const newKey = Ed25519Signer.generate();
      const onlyNew = await nextRoot((r) => {
        r.revokeKey('root', repo.signers.root[0]!.keyid);
        r.addKey('root', newKey.key);
      }, [newKey]);
      await assertRefused(await publish({ roots: [onlyNew.toJSON()] }), 400, 'UNSIGNED_METADATA', before);
      const skipping = await nextRoot((r) => {
        r.version += 1;
      }, repo.signers.root);
      await assertRefused(await publish({ roots: [skipping.toJSON()] }), 409, 'BAD_VERSION', before);
    });

    it('refuses a root whose timestamp key the server does not hold', async () => {
      const before = await versions();
      const unknown = await nextRoot((r) => {
        r.revokeKey('timestamp', repo.signers.timestamp.keyid);
        r.addKey('timestamp', Ed25519Signer.generate().key);
      }, repo.signers.root);
      await assertRefused(await publish({ roots: [unknown.toJSON()] }), 409, 'ONLINE_KEY_MISSING', before);
    });
  });

  describe('operations', () => {
    it('exposes Prometheus metrics', async () => {
      const text = (await http(`${server.url}/metrics`)).body.toString('utf8');
      assert.match(text, /upfleet_repo_http_requests_total\{method="PUT",route="images",status="401"\} \d+/);
      assert.match(text, /upfleet_repo_publish_total\{result="rejected"\} \d+/);
      assert.match(text, /upfleet_repo_role_version\{role="targets"\} \d+/);
      assert.match(text, /upfleet_repo_timestamp_expires_seconds \d+/);
    });
  });
});

describe('timestamp refresh', () => {
  it('re-signs timestamp before it expires, on the server timer', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'upfleet-repo-refresh-'));
    const repo = initRepository({ dir, passphrase: 'pw', expiries: { timestamp: 2 } });
    const server = await startImageRepoServer({
      dir, token: TOKEN, logger: silent, refreshIntervalMs: 100,
      keyring: new MemoryKeyring([repo.signers.snapshot, repo.signers.timestamp]),
    });
    try {
      const first = Metadata.fromBytes((await http(`${server.url}/metadata/timestamp.json`)).body, 'timestamp');
      await new Promise((r) => setTimeout(r, 1500));
      const later = Metadata.fromBytes((await http(`${server.url}/metadata/timestamp.json`)).body, 'timestamp');
      assert.ok(later.signed.version > first.signed.version, `${later.signed.version} > ${first.signed.version}`);
      assert.ok(Date.parse(later.signed.expires) > Date.parse(first.signed.expires));
      assert.equal(later.signed.snapshotMeta.version, first.signed.snapshotMeta.version);
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
