/**
 * The director's OpenAPI document (openapi.ts) against the OpenAPI 3.1 schema, against the
 * routes `addRoutes` registers (taken from the router itself), and against a real director on
 * loopback: every answer of a session that calls every operation is checked against the
 * documented status and response schema, and the session must have called every operation.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { utf8 } from '@upfleet/core';
import { assertValidOpenApi31, checkedFetch, operationsOf, ResponseChecker } from '../../../test/support/openapi.ts';
import { ADMIN_TOKEN, harness, PROVISIONING_TOKEN, SimDevice, type Harness } from '../testing/harness.ts';
import { openApiDocument } from './openapi.ts';

const doc = openApiDocument() as Record<string, any>;
/**
 * Operations the session below does not call, each with the test that checks its answers
 * against the document instead (empty: the session calls every operation).
 */
const CHECKED_ELSEWHERE: Record<string, string> = {
  'GET /api/v1/admin/events/stream': 'console-routes.test.ts (an endless event stream)',
};

describe('director OpenAPI document', () => {
  let h: Harness;
  const checker = new ResponseChecker(doc);

  before(async () => {
    h = await harness();
    // Every request of the harness (h.admin, h.register, h.send go through h.api) is checked.
    h.api = async (method, path, body, headers = {}) => {
      const r = await checkedFetch(checker, h.director.url, method, path, {
        headers: { 'content-type': 'application/json', ...headers },
        ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
      return { status: r.status, body: r.body, headers: r.headers };
    };
  });
  after(async () => {
    await h?.close();
  });

  it('is a valid OpenAPI 3.1 document whose schemas all compile under strict ajv', async () => {
    await assertValidOpenApi31(doc);
    checker.compileAll();
  });

  it('has exactly one operation per route the router registers', () => {
    const routes = h.director.routes().map((r) => `${r.method} ${r.pattern}`).sort();
    assert.equal(new Set(routes).size, routes.length, 'a route registered twice');
    assert.deepEqual(operationsOf(doc), routes);
  });

  it('documents every error status an operation can give, by kind', () => {
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, operation] of Object.entries(item)) {
        const statuses = Object.keys(operation.responses);
        assert.ok(statuses.includes('500'), `${method} ${path}: 500`);
        if (operation.security.length > 0) assert.ok(statuses.includes('401') && statuses.includes('403'), `${method} ${path}: 401/403`);
        if (operation.requestBody) assert.ok(statuses.includes('400') && statuses.includes('413'), `${method} ${path}: 400/413`);
        assert.ok(statuses.some((s) => s.startsWith('2')), `${method} ${path}: a success answer`);
      }
    }
  });

  it('real answers of every operation match their documented status and schema', async () => {
    const admin = h.admin;
    const d = new SimDevice('openapi-1');
    const brake = d.ecu('brake').serial;
    const info = h.imageRepo.addImage('brake-2.bin', utf8('brake firmware 2'), ['brake'], 2);

    // Device API
    await h.register(d);
    assert.equal((await h.api('POST', `/api/v1/devices/${d.id}/register`, d.registration(), { authorization: `Bearer ${PROVISIONING_TOKEN}` })).status, 200);
    assert.equal((await h.api('POST', `/api/v1/devices/${d.id}/register`, d.registration(), { authorization: 'Bearer wrong' })).status, 403);
    assert.equal((await h.api('POST', `/api/v1/devices/${d.id}/register`, '{', { authorization: `Bearer ${PROVISIONING_TOKEN}` })).status, 400);
    assert.equal((await h.api('GET', `/api/v1/devices/${d.id}/metadata/1.root.json`, undefined, d.headers())).status, 200);
    assert.equal((await h.api('GET', `/api/v1/devices/${d.id}/metadata/9.root.json`, undefined, d.headers())).status, 404);
    assert.equal((await h.api('GET', `/api/v1/devices/${d.id}/metadata/timestamp.json`)).status, 401);
    assert.equal((await h.send(d, d.manifest())).status, 200);

    // Admin API: devices and assignments
    assert.equal((await h.api('GET', '/api/v1/admin/devices')).status, 401);
    assert.equal((await admin('GET', '/api/v1/admin/devices?status=active')).status, 200);
    assert.equal((await admin('GET', '/api/v1/admin/devices?status=sleeping')).status, 400);
    assert.equal((await admin('POST', '/api/v1/admin/devices', { deviceId: 'openapi-pre', tags: ['lab'] })).status, 201);
    assert.equal((await admin('POST', '/api/v1/admin/devices', { deviceId: 'openapi-pre' })).status, 409);
    assert.equal((await admin('POST', '/api/v1/admin/devices/openapi-pre/approve')).status, 409);
    assert.equal((await admin('GET', '/api/v1/admin/devices/nobody')).status, 404);
    assert.equal((await admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: brake, image: 'missing.bin' }] })).status, 422);
    const assignment = await admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: brake, image: 'brake-2.bin' }] });
    assert.equal(assignment.status, 201);
    const targets = await h.api('GET', `/api/v1/devices/${d.id}/metadata/timestamp.json`, undefined, d.headers());
    assert.equal(targets.status, 200);
    assert.equal((await h.api('GET', `/api/v1/devices/${d.id}/metadata/${assignment.body.targetsVersion}.targets.json`, undefined, d.headers())).status, 200);
    assert.equal((await h.api('POST', `/api/v1/devices/${d.id}/progress`, { state: 'downloading', ecuSerial: brake, done: 5, total: 16 }, d.headers())).status, 204);
    assert.equal((await admin('GET', `/api/v1/admin/assignments/${assignment.body.id}`)).body.progress[brake].done, 5);
    assert.equal((await admin('GET', '/api/v1/admin/assignments/nothing')).status, 404);
    d.install('brake', 'brake-2.bin', info, 2);
    const done = d.manifest({ installationResult: { directorTargetsVersion: assignment.body.targetsVersion, success: true, code: 'OK', description: 'ok', ecus: [] } });
    assert.equal((await h.send(d, done)).status, 200);
    assert.equal((await h.send(d, done)).status, 409, 'a replay');
    assert.equal((await h.send(d, d.manifest({ attacks: { [brake]: 'targets signature invalid' } }))).status, 200);
    assert.equal((await admin('GET', `/api/v1/admin/devices/${d.id}`)).status, 200);
    assert.equal((await admin('GET', `/api/v1/admin/devices/${d.id}/assignments`)).body.assignments[0].status, 'succeeded');
    assert.equal((await admin('GET', `/api/v1/admin/devices/${d.id}/manifests?limit=2`)).body.manifests.length, 2);
    assert.equal((await admin('GET', `/api/v1/admin/devices/${d.id}/manifests?limit=-1e309`)).status, 400);
    assert.equal((await admin('GET', `/api/v1/admin/devices/${d.id}/events?kind=attack`)).body.events.length, 1);
    assert.equal((await admin('GET', `/api/v1/admin/devices/${d.id}/events`)).status, 200);

    // Campaigns
    assert.equal((await admin('POST', '/api/v1/admin/campaigns', { name: 'ghost', images: [{ hardwareId: 'brake', image: 'ghost.bin' }] })).status, 422);
    h.imageRepo.addImage('brake-3.bin', utf8('brake firmware 3'), ['brake'], 3);
    const campaign = await admin('POST', '/api/v1/admin/campaigns', { name: 'brakes', images: [{ hardwareId: 'brake', image: 'brake-3.bin' }], waves: [50, 100], successThreshold: 1 });
    assert.equal(campaign.status, 201);
    const id = campaign.body.id as string;
    assert.equal((await admin('POST', `/api/v1/admin/campaigns/${id}/pause`)).status, 409);
    assert.equal((await admin('POST', `/api/v1/admin/campaigns/${id}/start`)).status, 200);
    assert.equal((await admin('POST', `/api/v1/admin/campaigns/${id}/pause`)).status, 200);
    assert.equal((await admin('POST', `/api/v1/admin/campaigns/${id}/resume`)).status, 200);
    assert.equal((await admin('GET', `/api/v1/admin/campaigns/${id}`)).body.deviceStatus.length, 1);
    assert.equal((await admin('GET', '/api/v1/admin/campaigns')).status, 200);
    assert.equal((await admin('POST', `/api/v1/admin/campaigns/${id}/abort`)).status, 200);
    assert.equal((await admin('GET', '/api/v1/admin/campaigns/none')).status, 404);

    // An ECU replaced, a device decommissioned.
    const replacement = new SimDevice('openapi-new-brake', ['brake']).primary;
    const replaced = await admin('POST', `/api/v1/admin/devices/${d.id}/ecus/${brake}/replace`, { ecuSerial: `${brake}-2`, hardwareId: 'brake', publicKey: replacement.signer.key.toJSON() });
    assert.equal(replaced.status, 200);
    assert.equal((await admin('POST', `/api/v1/admin/devices/${d.id}/ecus/${brake}/replace`, { hardwareId: 'brake', publicKey: replacement.signer.key.toJSON() })).status, 404);
    assert.equal((await admin('POST', `/api/v1/admin/devices/${d.id}/decommission`)).status, 200);

    // Console: a session (cookie and CSRF token), the fleet and image listings, the page.
    const login = await h.api('POST', '/api/v1/console/login', { token: ADMIN_TOKEN });
    assert.equal(login.status, 200);
    assert.equal((await h.api('POST', '/api/v1/console/login', { token: 'wrong' })).status, 401);
    const session = { cookie: (login.headers!.get('set-cookie') ?? '').split(';')[0]! };
    assert.equal((await h.api('GET', '/api/v1/console/session', undefined, session)).body.csrfToken, login.body.csrfToken);
    assert.equal((await admin('GET', '/api/v1/admin/fleet')).status, 200);
    assert.equal((await admin('GET', '/api/v1/admin/images')).status, 200);
    assert.equal((await h.api('POST', '/api/v1/console/logout', undefined, { ...session, 'x-upfleet-csrf': login.body.csrfToken })).status, 204);
    assert.ok([200, 503].includes((await h.api('GET', '/')).status));
    assert.equal((await h.api('GET', '/assets/none.js')).status, 404);

    // Operations, and a body over the limit.
    assert.equal((await h.api('GET', '/healthz')).status, 200);
    assert.equal((await h.api('GET', '/metrics')).status, 200);
    assert.equal((await h.api('GET', '/api/v1/openapi.json')).body.openapi, '3.1.0');
    assert.equal((await admin('POST', '/api/v1/admin/devices', { deviceId: 'x'.repeat(1 << 20) })).status, 413);

    const called = new Set([...checker.seen].map((s) => s.split(' ').slice(0, 2).join(' ')));
    assert.deepEqual(operationsOf(doc).filter((o) => !called.has(o) && !(o in CHECKED_ELSEWHERE)), [], 'operations the session did not call');
  });

  it('serves the document it describes', async () => {
    const r = await fetch(`${h.director.url}/api/v1/openapi.json`);
    assert.deepEqual(await r.json(), JSON.parse(JSON.stringify(doc)));
  });
});
