/**
 * Every admin endpoint checks its query parameters: a bad one is a 400 with a
 * JSON error naming it, never a 500 (real HTTP on loopback).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { harness, SimDevice, type Harness } from '../testing/harness.ts';

describe('admin API query parameters', () => {
  let h: Harness;
  const d = new SimDevice('query-1');
  let assignmentId: string;
  let campaignId: string;

  before(async () => {
    h = await harness();
    await h.register(d);
    for (let i = 0; i < 3; i++) assert.equal((await h.send(d, d.manifest())).status, 200);
    h.imageRepo.addImage('gw-q.bin', new Uint8Array([1, 2, 3]), ['gw'], 1);
    assignmentId = (await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.primary.serial, image: 'gw-q.bin' }] })).body.id;
    campaignId = (await h.admin('POST', '/api/v1/admin/campaigns', { name: 'q', images: [{ hardwareId: 'gw', image: 'gw-q.bin' }], tags: ['none'] })).body.id;
  });
  after(() => h.close());

  const manifests = (q: string) => `/api/v1/admin/devices/${d.id}/manifests?${q}`;
  const bad: Array<[string, () => string, string, RegExp]> = [
    ['limit=-1e309', () => manifests('limit=-1e309'), 'limit', /limit must be an integer from 1 to 1000/],
    ['limit=0', () => manifests('limit=0'), 'limit', /from 1 to 1000/],
    ['limit=1001', () => manifests('limit=1001'), 'limit', /from 1 to 1000/],
    ['limit=1.5', () => manifests('limit=1.5'), 'limit', /integer/],
    ['limit=0x10', () => manifests('limit=0x10'), 'limit', /integer/],
    ['limit= (empty)', () => manifests('limit='), 'limit', /integer/],
    ['limit=99999999999999999999', () => manifests('limit=99999999999999999999'), 'limit', /integer/],
    ['limit twice', () => manifests('limit=1&limit=2'), 'limit', /more than once/],
    ['an unknown parameter', () => manifests('limt=5'), 'limt', /unknown query parameter limt \(this endpoint takes limit\)/],
    ['status=bogus', () => '/api/v1/admin/devices?status=bogus', 'status', /status must be one of preregistered, pending, active, decommissioned/],
    ['kind=bogus', () => `/api/v1/admin/devices/${d.id}/events?kind=bogus`, 'kind', /kind must be one of attack/],
    ['a parameter on the device view', () => `/api/v1/admin/devices/${d.id}?verbose=1`, 'verbose', /takes none/],
    ['a parameter on assignments', () => `/api/v1/admin/devices/${d.id}/assignments?limit=5`, 'limit', /takes none/],
    ['a parameter on one assignment', () => `/api/v1/admin/assignments/${assignmentId}?x=1`, 'x', /takes none/],
    ['a parameter on campaigns', () => '/api/v1/admin/campaigns?status=running', 'status', /takes none/],
    ['a parameter on one campaign', () => `/api/v1/admin/campaigns/${campaignId}?x=`, 'x', /takes none/],
  ];
  for (const [name, path, field, message] of bad) {
    it(`answers 400 for ${name}`, async () => {
      const r = await h.admin('GET', path());
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'BAD_REQUEST');
      assert.equal(r.body.error.field, field);
      assert.match(r.body.error.message, message);
    });
  }

  it('refuses a query on an admin action before doing it', async () => {
    const r = await h.admin('POST', `/api/v1/admin/campaigns/${campaignId}/start?force=1`);
    assert.equal(r.status, 400);
    assert.equal((await h.admin('GET', `/api/v1/admin/campaigns/${campaignId}`)).body.status, 'draft');
  });

  it('takes good values: limit in range, the enums, and defaults', async () => {
    assert.equal((await h.admin('GET', manifests('limit=2'))).body.manifests.length, 2);
    assert.equal((await h.admin('GET', manifests('limit=1000'))).body.manifests.length, 3);
    assert.equal((await h.admin('GET', `/api/v1/admin/devices/${d.id}/manifests`)).body.manifests.length, 3);
    assert.deepEqual((await h.admin('GET', '/api/v1/admin/devices?status=active')).body.devices.map((x: { id: string }) => x.id), [d.id]);
    assert.equal((await h.admin('GET', `/api/v1/admin/devices/${d.id}/events?kind=attack`)).status, 200);
  });
});
