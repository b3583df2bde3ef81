/**
 * The console's routes over real HTTP: login into a session cookie, the same
 * session accepted by a second director on the same directory and database (as
 * with several director processes), the viewer role, the change stream (written
 * through one director, streamed by the other), the image and fleet listings,
 * and the built files with their content types and cache headers.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { utf8 } from '@upfleet/core';
import { harness, ADMIN_TOKEN, PROVISIONING_TOKEN, SimDevice, type Harness } from '../testing/harness.ts';
import { startDirector, type RunningDirector } from '../director.ts';
import { ConsoleFiles } from './console-files.ts';

const VIEWER_TOKEN = 'viewer-secret-for-tests';

/** Reads Server-Sent Events from a stream until `until` returns true for the events so far. */
async function readEvents(url: string, headers: Record<string, string>, until: (events: Array<{ event: string; data: any }>) => boolean, trigger: () => Promise<unknown>) {
  const controller = new AbortController();
  const res = await fetch(url, { headers, signal: controller.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^text\/event-stream/);
  const events: Array<{ event: string; data: any }> = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let triggered = false;
  const deadline = setTimeout(() => controller.abort(), 10_000);
  try {
    while (!until(events)) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event) events.push({ event, data: data ? JSON.parse(data) : undefined });
      }
      if (!triggered && events.some((e) => e.event === 'ready')) {
        triggered = true;
        await trigger();
      }
    }
  } finally {
    clearTimeout(deadline);
    controller.abort();
  }
  return events;
}

describe('director console routes', () => {
  let h: Harness;
  let second: RunningDirector;
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  before(async () => {
    h = await harness({ viewerToken: VIEWER_TOKEN });
    second = await startDirector({
      dir: h.dir, port: 0, imageRepoUrl: h.imageRepo.url, imageRepoRoot: h.imageRepo.rootBytes, adminToken: ADMIN_TOKEN, viewerToken: VIEWER_TOKEN,
      provisioningToken: PROVISIONING_TOKEN, onlinePassphrase: 'online-pass', mqtt: 'none', logger: pino({ level: 'silent' }),
    });
  });
  after(async () => {
    await second?.close();
    await h?.close();
  });

  const login = async (token: string, url = h.director.url) => {
    const res = await fetch(`${url}/api/v1/console/login`, { method: 'POST', body: JSON.stringify({ token }), headers: { 'content-type': 'application/json' } });
    return { status: res.status, cookie: res.headers.get('set-cookie')?.split(';')[0], body: await res.json() as any };
  };

  it('logs in with the admin token, and another director on the same database accepts the session', async () => {
    const r = await login(ADMIN_TOKEN);
    assert.equal(r.status, 200);
    assert.equal(r.body.role, 'operator');
    const other = await fetch(`${second.url}/api/v1/admin/campaigns`, { method: 'POST', body: '{}', headers: { cookie: r.cookie!, 'x-upfleet-csrf': r.body.csrfToken } });
    assert.equal(other.status, 400, 'authorized (the body is what is wrong)');
    const session = await fetch(`${second.url}/api/v1/console/session`, { headers: { cookie: r.cookie! } });
    assert.deepEqual(await session.json(), r.body);
  });

  it('refuses a wrong login token with 401, and a request with neither cookie nor token', async () => {
    assert.equal((await login('wrong')).status, 401);
    assert.equal((await h.api('GET', '/api/v1/admin/devices')).status, 401);
  });

  it('lets the viewer token read and refuses its changes (403 READ_ONLY_ROLE), by bearer and by session', async () => {
    assert.equal((await h.api('GET', '/api/v1/admin/devices', undefined, bearer(VIEWER_TOKEN))).status, 200);
    const byBearer = await h.api('POST', '/api/v1/admin/devices', { deviceId: 'v-1' }, bearer(VIEWER_TOKEN));
    assert.equal(byBearer.status, 403);
    assert.equal(byBearer.body.error.code, 'READ_ONLY_ROLE');
    const r = await login(VIEWER_TOKEN);
    const bySession = await h.api('POST', '/api/v1/admin/devices', { deviceId: 'v-1' }, { cookie: r.cookie!, 'x-upfleet-csrf': r.body.csrfToken });
    assert.equal(bySession.body.error.code, 'READ_ONLY_ROLE');
    assert.equal((await h.admin('GET', '/api/v1/admin/devices/v-1')).status, 404, 'nothing was created');
  });

  it('streams a change written through one director to a client of the other', async () => {
    const r = await login(VIEWER_TOKEN, second.url);
    const events = await readEvents(`${second.url}/api/v1/admin/events/stream`, { cookie: r.cookie! },
      (list) => list.some((e) => e.event === 'change' && e.data.devices.includes('streamed-1')),
      () => h.admin('POST', '/api/v1/admin/devices', { deviceId: 'streamed-1' }));
    assert.equal(events[0]!.event, 'ready');
    assert.deepEqual(events.at(-1)!.data, { devices: ['streamed-1'], assignments: [], campaigns: [] });
  });

  it('streams assignment progress as a change of that assignment', async () => {
    const info = h.imageRepo.addImage('gw-2.bin', utf8('firmware two'), ['gw'], 2);
    const device = new SimDevice('progress-1', ['gw']);
    await h.register(device);
    const a = await h.admin('POST', '/api/v1/admin/devices/progress-1/assignments', { ecus: [{ ecuSerial: device.primary.serial, image: 'gw-2.bin' }] });
    assert.equal(a.status, 201);
    const events = await readEvents(`${h.director.url}/api/v1/admin/events/stream`, bearer(ADMIN_TOKEN),
      (list) => list.some((e) => e.event === 'change' && e.data.assignments.includes(a.body.id)),
      () => h.api('POST', '/api/v1/devices/progress-1/progress', { ecuSerial: device.primary.serial, state: 'downloading', done: 5, total: info.length }, device.headers()));
    assert.ok(events.length >= 2);
  });

  it('lists the image repository with hardware IDs, versions, release counters and the signing role', async () => {
    h.imageRepo.addImage('gw-3.bin', utf8('firmware three'), ['gw', 'gw-b'], 3);
    const r = await h.api('GET', '/api/v1/admin/images', undefined, bearer(VIEWER_TOKEN));
    assert.equal(r.status, 200);
    const gw3 = r.body.images.find((i: { name: string }) => i.name === 'gw-3.bin');
    assert.deepEqual({ ...gw3, hashes: Object.keys(gw3.hashes) }, {
      name: 'gw-3.bin', length: 14, hashes: ['sha256', 'sha512'], hardwareIds: ['gw', 'gw-b'], version: '3.0.0', releaseCounter: 3, role: 'targets',
    });
    assert.equal((await h.api('GET', '/api/v1/admin/images?x=1', undefined, bearer(ADMIN_TOKEN))).status, 400);
  });

  it('summarises the fleet: devices by status, versions per hardware ID', async () => {
    const r = await h.api('GET', '/api/v1/admin/fleet', undefined, bearer(VIEWER_TOKEN));
    assert.equal(r.status, 200);
    assert.equal(r.body.devices.total, r.body.devices.byStatus.active + r.body.devices.byStatus.preregistered + r.body.devices.byStatus.pending + r.body.devices.byStatus.decommissioned);
    assert.ok(r.body.devices.byStatus.preregistered >= 1);
    assert.deepEqual(r.body.versions.find((v: { hardwareId: string }) => v.hardwareId === 'gw'), { hardwareId: 'gw', image: null, releaseCounter: 0, ecus: 1 });
  });

  it('serves the page and its assets from the director, with a CSP and no CDN', async () => {
    const res = await fetch(`${h.director.url}/`);
    // Built (npm ci, run-tests) or not, the answer is an HTML page with the CSP.
    assert.match(res.headers.get('content-type')!, /^text\/html; charset=utf-8$/);
    assert.match(res.headers.get('content-security-policy')!, /default-src 'self'/);
    const html = await res.text();
    if (res.status === 200) assert.doesNotMatch(html, /https?:\/\//, 'the page loads nothing from elsewhere');
    else assert.match(html, /npm run build:console/);
    assert.equal((await fetch(`${h.director.url}/assets/..%2Fpackage.json`)).status, 404);
  });
});

describe('ConsoleFiles', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'upfleet-console-files-'));
    mkdirSync(join(dir, 'assets'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html>');
    writeFileSync(join(dir, 'assets', 'index-AbC123.js'), 'export {}');
    writeFileSync(join(dir, 'assets', 'index-AbC123.css'), 'body{}');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('serves index.html revalidated and hashed assets immutable, each with its content type', () => {
    const files = new ConsoleFiles(dir);
    const index = files.index();
    assert.equal(index.status, 200);
    assert.ok('bytes' in index);
    assert.equal(index.contentType, 'text/html; charset=utf-8');
    assert.equal(index.headers!['cache-control'], 'no-cache');
    const js = files.asset('index-AbC123.js')!;
    assert.ok('bytes' in js);
    assert.equal(js.contentType, 'text/javascript; charset=utf-8');
    assert.equal(js.headers!['cache-control'], 'public, max-age=31536000, immutable');
    assert.equal((files.asset('index-AbC123.css') as { contentType: string }).contentType, 'text/css; charset=utf-8');
  });

  it('serves nothing outside assets/ and no unknown type', () => {
    const files = new ConsoleFiles(dir);
    for (const name of ['../index.html', '.hidden.js', 'index-AbC123.exe', 'missing.js']) assert.equal(files.asset(name), undefined, name);
  });

  it('answers 503 with how to build it when the build is missing', () => {
    const r = new ConsoleFiles(join(dir, 'nowhere')).index();
    assert.equal(r.status, 503);
    assert.ok('bytes' in r);
    assert.match(Buffer.from(r.bytes).toString(), /not built.*npm run build:console/s);
  });
});
