/**
 * The image repository's OpenAPI document (openapi.ts) against the OpenAPI 3.1 schema, against
 * the server's route table (ROUTES, what the dispatcher matches), and against a real server on
 * loopback: every answer of a session that calls every operation (uploads, publishes, the
 * static layout with ranges and ETags, refusals) is checked against the documented status and
 * response schema, and the session must have called every operation.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { assertValidOpenApi31, checkedFetch, operationsOf, ResponseChecker } from '../../test/support/openapi.ts';
import { addTarget, initRepository, startImageRepoServer, type ImageRepoServer } from './index.ts';
import { openApiDocument } from './openapi.ts';
import { ROUTES } from './server.ts';

const doc = openApiDocument() as Record<string, any>;
const TOKEN = 'upload-token';
const MAX_UPLOAD = 64 * 1024;

describe('image repository OpenAPI document', () => {
  let tmp: string;
  let server: ImageRepoServer;
  const checker = new ResponseChecker(doc);
  const call = (method: string, path: string, init: { headers?: Record<string, string>; body?: string | Uint8Array } = {}) => checkedFetch(checker, server.url, method, path, init);

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'upfleet-repo-openapi-'));
    initRepository({ dir: join(tmp, 'served'), passphrase: 'operator' });
    // The operator's copy signs offline what the test then uploads and publishes by hand.
    cpSync(join(tmp, 'served'), join(tmp, 'operator'), { recursive: true });
    server = await startImageRepoServer({ dir: join(tmp, 'served'), port: 0, host: '127.0.0.1', token: TOKEN, maxUploadBytes: MAX_UPLOAD, logger: pino({ level: 'silent' }) });
  });
  after(async () => {
    await server?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('is a valid OpenAPI 3.1 document whose schemas all compile under strict ajv', async () => {
    await assertValidOpenApi31(doc);
    checker.compileAll();
  });

  it('has exactly one operation per method and path of the server\'s routes', () => {
    const routes = ROUTES.flatMap((r) => r.methods.map((m) => `${m} ${r.path}`)).sort();
    assert.deepEqual(operationsOf(doc), routes);
  });

  it('real answers of every operation match their documented status and schema', async () => {
    // An image and the targets metadata listing it, signed in the operator's copy.
    const image = randomBytes(3000);
    writeFileSync(join(tmp, 'fw.bin'), image);
    await addTarget({ dir: join(tmp, 'operator'), passphrase: 'operator' }, { file: join(tmp, 'fw.bin'), name: 'fw/brake-1.0.0.bin', hardwareIds: ['brake'], version: '1.0.0' });
    const targets = readFileSync(join(tmp, 'operator', 'metadata', 'targets.json'), 'utf8');
    const auth = { authorization: `Bearer ${TOKEN}` };

    // Upload API
    assert.equal((await call('PUT', '/api/v1/images/fw/brake-1.0.0.bin', { body: image })).status, 401);
    assert.equal((await call('PUT', '/api/v1/images/fw/a%20b.bin', { headers: auth, body: image })).status, 400);
    assert.equal((await call('PUT', '/api/v1/images/fw/huge.bin', { headers: auth, body: new Uint8Array(MAX_UPLOAD + 1) })).status, 413);
    assert.equal((await call('PUT', '/api/v1/images/fw/brake-1.0.0.bin', { headers: auth, body: image })).status, 201);
    assert.equal((await call('POST', '/api/v1/publish', { headers: auth, body: '{"targets": 1' })).status, 400);
    assert.equal((await call('POST', '/api/v1/publish', { headers: auth, body: `{"targets":${targets}}` })).status, 200);
    assert.equal((await call('POST', '/api/v1/publish', { headers: auth, body: `{"targets":${targets}}` })).status, 409, 'the same version again');

    // The static layout
    const timestamp = await call('GET', '/metadata/timestamp.json');
    assert.equal(timestamp.status, 200);
    assert.equal((await call('GET', '/metadata/timestamp.json', { headers: { 'if-none-match': timestamp.headers.get('etag')! } })).status, 304);
    assert.equal((await call('HEAD', '/metadata/2.targets.json')).status, 200);
    assert.equal((await call('GET', '/metadata/1.root.json')).status, 200);
    assert.equal((await call('GET', '/metadata/9.root.json')).status, 404);
    assert.equal((await call('HEAD', '/metadata/9.root.json')).status, 404);
    assert.equal((await call('GET', '/metadata/%ZZ.json')).status, 400);
    const sha256 = createHash('sha256').update(image).digest('hex');
    const target = `/targets/fw/${sha256}.brake-1.0.0.bin`;
    const whole = await call('GET', target);
    assert.equal(whole.status, 200);
    assert.equal((await call('GET', target, { headers: { range: 'bytes=0-99' } })).status, 206);
    assert.equal((await call('GET', target, { headers: { range: 'bytes=5000-' } })).status, 416);
    assert.equal((await call('GET', target, { headers: { 'if-none-match': whole.headers.get('etag')! } })).status, 304);
    assert.equal((await call('HEAD', target)).status, 200);
    assert.equal((await call('HEAD', `/targets/fw/${'0'.repeat(64)}.brake-1.0.0.bin`)).status, 404);
    assert.equal((await call('GET', `/targets/fw/${'0'.repeat(64)}.brake-1.0.0.bin`)).status, 404);

    // Operations
    const status = await call('GET', '/api/v1/status');
    assert.deepEqual(status.body.targets.map((t: { name: string }) => t.name), ['fw/brake-1.0.0.bin']);
    assert.equal((await call('GET', '/healthz')).body.ok, true);
    assert.equal((await call('GET', '/metrics')).status, 200);
    assert.equal((await call('GET', '/api/v1/openapi.json')).body.openapi, '3.1.0');

    const called = new Set([...checker.seen].map((s) => s.split(' ').slice(0, 2).join(' ')));
    assert.deepEqual(operationsOf(doc).filter((o) => !called.has(o)), [], 'operations the session did not call');
  });

  it('refuses a method a served path does not take with 405, and serves the document it describes', async () => {
    const r = await fetch(`${server.url}/healthz`, { method: 'POST' });
    assert.equal(r.status, 405);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'METHOD_NOT_ALLOWED');
    const served = await fetch(`${server.url}/api/v1/openapi.json`);
    assert.deepEqual(await served.json(), JSON.parse(JSON.stringify(doc)));
  });
});
