/**
 * The director over real HTTP on loopback with a real image repository:
 * provisioning, device authentication, per-device metadata, assignments and
 * their refusals, manifest ingestion and its attack cases, restart.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ed25519Signer, KeyFileError, TrustedMetadataSet, utf8 } from '@upfleet/core';
import { startDirector } from './director.ts';
import { harness, PROVISIONING_TOKEN, SimDevice, type Harness } from './testing/harness.ts';
import { signDeviceToken } from '@upfleet/core';
import { EVENTS_PER_DEVICE } from './store.ts';
import { REPORT_WINDOW_MS } from './report-memory.ts';

const FW = utf8('brake firmware 2.0');

async function fetchMetadata(h: Harness, d: SimDevice, file: string): Promise<{ status: number; bytes: Uint8Array }> {
  const res = await fetch(`${h.director.url}/api/v1/devices/${d.id}/metadata/${file}`, { headers: d.headers() });
  return { status: res.status, bytes: new Uint8Array(await res.arrayBuffer()) };
}

/** Verifies the device's whole director repository as a client would. */
async function verifiedTargets(h: Harness, d: SimDevice) {
  const root = await fetchMetadata(h, d, '1.root.json');
  const set = new TrustedMetadataSet(root.bytes, new Date());
  const ts = set.updateTimestamp((await fetchMetadata(h, d, 'timestamp.json')).bytes);
  const snap = set.updateSnapshot((await fetchMetadata(h, d, `${ts.snapshotMeta.version}.snapshot.json`)).bytes);
  return set.updateTargets((await fetchMetadata(h, d, `${snap.meta['targets.json']!.version}.targets.json`)).bytes);
}

describe('director over HTTP', () => {
  let h: Harness;
  before(async () => {
    h = await harness();
    h.imageRepo.addImage('brake-2.bin', FW, ['brake'], 2);
    h.imageRepo.addImage('gw-2.bin', utf8('gateway 2'), ['gw'], 2);
  });
  after(() => h.close());

  describe('provisioning', () => {
    it('registers once, is idempotent, refuses other keys and a wrong token', async () => {
      const d = new SimDevice('prov-1');
      const reg = d.registration(['eu']);
      const auth = { authorization: `Bearer ${PROVISIONING_TOKEN}` };
      const first = await h.api('POST', `/api/v1/devices/${d.id}/register`, reg, auth);
      assert.equal(first.status, 201);
      assert.deepEqual(first.body, { deviceId: 'prov-1', status: 'active', rootVersion: 1 });
      assert.equal((await h.api('POST', `/api/v1/devices/${d.id}/register`, reg, auth)).status, 200);
      const other = new SimDevice('prov-1');
      const conflict = await h.api('POST', `/api/v1/devices/${d.id}/register`, other.registration(), auth);
      assert.equal(conflict.status, 409);
      assert.equal(conflict.body.error.code, 'ALREADY_REGISTERED');
      const bad = await h.api('POST', `/api/v1/devices/prov-2/register`, new SimDevice('prov-2').registration(), { authorization: 'Bearer nope' });
      assert.equal(bad.status, 403);
      assert.deepEqual([bad.body.error.code, bad.body.error.message], ['WRONG_PROVISIONING_TOKEN', 'the bearer token is not the fleet provisioning token']);
      const none = await h.api('POST', `/api/v1/devices/prov-2/register`, new SimDevice('prov-2').registration());
      assert.equal(none.status, 401);
      assert.deepEqual([none.body.error.code, none.body.error.reason], ['UNAUTHENTICATED', 'no provisioning token: send Authorization: Bearer <provisioning token>']);
      assert.equal((await h.admin('GET', '/api/v1/admin/devices/prov-2')).status, 404);
    });

    it('refuses an ECU serial that another device owns', async () => {
      const a = new SimDevice('dup-a');
      await h.register(a);
      const b = new SimDevice('dup-b');
      b.ecus[1]!.serial = a.ecus[1]!.serial;
      const r = await h.api('POST', `/api/v1/devices/${b.id}/register`, b.registration(), { authorization: `Bearer ${PROVISIONING_TOKEN}` });
      assert.equal(r.status, 409);
      assert.equal(r.body.error.code, 'ECU_TAKEN');
    });

    it('decommissioned devices lose access and cannot register again', async () => {
      const d = new SimDevice('decom-1');
      await h.register(d);
      assert.equal((await h.admin('POST', `/api/v1/admin/devices/${d.id}/decommission`)).body.status, 'decommissioned');
      assert.equal((await fetchMetadata(h, d, 'timestamp.json')).status, 403);
      const again = await h.api('POST', `/api/v1/devices/${d.id}/register`, d.registration(), { authorization: `Bearer ${PROVISIONING_TOKEN}` });
      assert.equal(again.status, 403);
    });

    it('replacing an ECU takes an admin and the new key', async () => {
      const d = new SimDevice('repl-1');
      await h.register(d);
      const brake = d.ecu('brake');
      const newKey = Ed25519Signer.generate();
      const r = await h.admin('POST', `/api/v1/admin/devices/${d.id}/ecus/${brake.serial}/replace`, {
        ecuSerial: 'repl-1-brake-new', hardwareId: 'brake', publicKey: newKey.key.toJSON(),
      });
      assert.equal(r.status, 200);
      // The old ECU key no longer counts: the manifest must carry the new ECU.
      const stale = await h.send(d, d.manifest());
      assert.equal(stale.body.error.code, 'UNKNOWN_ECU');
      brake.serial = 'repl-1-brake-new';
      brake.signer = newKey;
      assert.equal((await h.send(d, d.manifest())).status, 200);
    });
  });

  describe('manual approval', () => {
    it('keeps new devices pending until approved; pre-registered devices are active at once', async () => {
      const m = await harness({ approval: 'manual' });
      try {
        const d = new SimDevice('pend-1');
        await m.register(d);
        assert.equal((await fetchMetadata(m, d, 'timestamp.json')).status, 403);
        assert.equal((await m.send(d, d.manifest())).body.error.code, 'DEVICE_NOT_APPROVED');
        assert.equal((await m.admin('POST', `/api/v1/admin/devices/${d.id}/approve`)).body.status, 'active');
        assert.equal((await fetchMetadata(m, d, 'timestamp.json')).status, 200);
        assert.equal((await m.admin('POST', '/api/v1/admin/devices', { deviceId: 'pre-1', tags: ['beta'] })).status, 201);
        const pre = new SimDevice('pre-1');
        const r = await m.api('POST', `/api/v1/devices/pre-1/register`, pre.registration(), { authorization: `Bearer ${PROVISIONING_TOKEN}` });
        assert.equal(r.body.status, 'active');
        assert.deepEqual((await m.admin('GET', '/api/v1/admin/devices/pre-1')).body.tags, ['beta']);
      } finally {
        await m.close();
      }
    });
  });

  describe('device authentication', () => {
    it('401 without or with a bad token, 403 for another device, 200 for its own', async () => {
      const a = new SimDevice('auth-a');
      const b = new SimDevice('auth-b');
      await h.register(a);
      await h.register(b);
      const url = (d: SimDevice) => `${h.director.url}/api/v1/devices/${d.id}/metadata/timestamp.json`;
      assert.equal((await fetch(url(a))).status, 401);
      const forged = signDeviceToken(a.id, Ed25519Signer.generate(), Math.floor(Date.now() / 1000) + 60);
      assert.equal((await fetch(url(a), { headers: { authorization: `UpfleetDevice ${forged}` } })).status, 401);
      const expired = signDeviceToken(a.id, a.primary.signer, Math.floor(Date.now() / 1000) - 120);
      assert.equal((await fetch(url(a), { headers: { authorization: `UpfleetDevice ${expired}` } })).status, 401);
      const tooLong = signDeviceToken(a.id, a.primary.signer, Math.floor(Date.now() / 1000) + 7200);
      assert.equal((await fetch(url(a), { headers: { authorization: `UpfleetDevice ${tooLong}` } })).status, 401);
      const cross = await fetch(url(b), { headers: a.headers() });
      assert.equal(cross.status, 403);
      assert.equal(((await cross.json()) as any).error.code, 'OTHER_DEVICE');
      const crossManifest = await h.api('POST', `/api/v1/devices/${b.id}/manifest`, b.manifest(), a.headers());
      assert.equal(crossManifest.status, 403);
      assert.equal((await fetch(url(a), { headers: a.headers() })).status, 200);
    });

    it('admin endpoints need the admin token', async () => {
      const none = await h.api('GET', '/api/v1/admin/devices');
      assert.deepEqual([none.status, none.body.error.code, none.body.error.reason], [401, 'UNAUTHENTICATED', 'no admin token: send Authorization: Bearer <admin token>']);
      const wrong = await h.api('GET', '/api/v1/admin/devices', undefined, { authorization: `Bearer ${PROVISIONING_TOKEN}` });
      assert.deepEqual([wrong.status, wrong.body.error.code, wrong.body.error.message], [403, 'WRONG_ADMIN_TOKEN', 'the bearer token is not the admin token']);
    });
  });

  describe('per-device metadata', () => {
    it('verifies from the fleet root, names the device, lists ECU identifiers', async () => {
      const d = new SimDevice('meta-1');
      await h.register(d);
      const a = await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, {
        ecus: [{ ecuSerial: d.ecu('brake').serial, image: 'brake-2.bin' }, { ecuSerial: d.primary.serial, image: 'gw-2.bin' }],
      });
      assert.equal(a.status, 201);
      const targets = await verifiedTargets(h, d);
      assert.equal(targets.unrecognizedFields.deviceId, 'meta-1');
      assert.equal(targets.version, a.body.targetsVersion);
      // The image repository's release counter and version ride along, for partial-verification ECUs.
      const image = (name: string) => h.imageRepo.builder.targets.targets[name]!.custom!;
      assert.deepEqual(targets.targets['brake-2.bin']!.custom, {
        ecuIdentifiers: { [d.ecu('brake').serial]: { hardwareId: 'brake' } }, releaseCounter: image('brake-2.bin').releaseCounter, version: image('brake-2.bin').version,
      });
      assert.deepEqual(targets.targets['gw-2.bin']!.custom, {
        ecuIdentifiers: { [d.primary.serial]: { hardwareId: 'gw' } }, releaseCounter: image('gw-2.bin').releaseCounter, version: image('gw-2.bin').version,
      });
      assert.equal(targets.targets['brake-2.bin']!.custom!.releaseCounter, 2);
      assert.equal(targets.delegations, undefined);
      const root = readFileSync(join(h.dir, 'metadata', '1.root.json'));
      assert.deepEqual((await fetchMetadata(h, d, '1.root.json')).bytes, new Uint8Array(root));
      assert.equal((await fetchMetadata(h, d, '2.root.json')).status, 404);
    });

    it('names the device in the signed part of timestamp, snapshot and targets', async () => {
      // The online keys are fleet-wide: without deviceId in every role, device A's
      // timestamp and snapshot verify on device B (issue 11, finding 16).
      const d = new SimDevice('meta-bind');
      await h.register(d);
      await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image: 'brake-2.bin' }] });
      const signedOf = async (file: string) => {
        const r = await fetchMetadata(h, d, file);
        assert.equal(r.status, 200, file);
        return JSON.parse(Buffer.from(r.bytes).toString()).signed;
      };
      const timestamp = await signedOf('timestamp.json');
      const snapshot = await signedOf(`${timestamp.meta['snapshot.json'].version}.snapshot.json`);
      const targets = await signedOf(`${snapshot.meta['targets.json'].version}.targets.json`);
      assert.deepEqual([timestamp.deviceId, snapshot.deviceId, targets.deviceId], [d.id, d.id, d.id]);
      assert.equal((await verifiedTargets(h, d)).unrecognizedFields.deviceId, d.id, 'the models keep it and still verify');
    });

    it('re-signs a snapshot written before it named the device at the first timestamp fetch', async () => {
      const d = new SimDevice('meta-upgrade');
      await h.register(d);
      const store = h.director.services.store;
      const state = (await store.getRepoState(d.id))!;
      const name = `${state.snapshotVersion}.snapshot.json`;
      const old = JSON.parse(Buffer.from((await store.getMetadataFile(d.id, name))!).toString());
      delete old.signed.deviceId; // as an older director wrote it
      await store.putMetadataFile(d.id, name, utf8(JSON.stringify(old)));
      const timestamp = JSON.parse(Buffer.from((await fetchMetadata(h, d, 'timestamp.json')).bytes).toString()).signed;
      assert.equal(timestamp.meta['snapshot.json'].version, state.snapshotVersion + 1);
      assert.equal(timestamp.deviceId, d.id);
      const snapshot = JSON.parse(Buffer.from((await fetchMetadata(h, d, `${state.snapshotVersion + 1}.snapshot.json`)).bytes).toString()).signed;
      assert.equal(snapshot.deviceId, d.id);
      assert.equal((await verifiedTargets(h, d)).version, state.targetsVersion, 'the chain verifies; targets unchanged');
      await fetchMetadata(h, d, 'timestamp.json');
      assert.equal((await store.getRepoState(d.id))!.snapshotVersion, state.snapshotVersion + 1, 'done once');
    });

    it('re-signs roles past half their lifetime when the timestamp is fetched', async () => {
      let now = Date.now();
      const m = await harness({ now: () => new Date(now), expiries: { timestamp: 100, snapshot: 1000, targets: 10000 } });
      try {
        const d = new SimDevice('exp-1');
        d.clock = () => now;
        await m.register(d);
        const v1 = (await verifiedTargets(m, d)).version;
        now += 60_000; // timestamp (100 s) past half its life; snapshot and targets not
        const res = await fetchMetadata(m, d, 'timestamp.json');
        const ts = JSON.parse(Buffer.from(res.bytes).toString());
        assert.equal(ts.signed.version, 2);
        assert.equal(ts.signed.meta['snapshot.json'].version, 1);
        assert.equal(ts.signed.deviceId, 'exp-1', 'a timestamp re-signed alone names the device too');
        now += 5_100_000; // targets past half its life
        const set = new TrustedMetadataSet((await fetchMetadata(m, d, '1.root.json')).bytes, new Date(now));
        set.updateTimestamp((await fetchMetadata(m, d, 'timestamp.json')).bytes);
        set.updateSnapshot((await fetchMetadata(m, d, `${set.timestamp!.snapshotMeta.version}.snapshot.json`)).bytes);
        const t = set.updateTargets((await fetchMetadata(m, d, `${set.snapshot!.meta['targets.json']!.version}.targets.json`)).bytes);
        assert.equal(t.version, v1 + 1);
        assert.ok(!t.isExpired(new Date(now)));
      } finally {
        await m.close();
      }
    });
  });

  describe('ECU reports older than the window', () => {
    it('refuses a report from 20 cycles and a day ago by its time, its nonce long forgotten', async () => {
      let now = Date.now();
      const m = await harness({ now: () => new Date(now) });
      try {
        const d = new SimDevice('window-1');
        d.clock = () => now;
        await m.register(d);
        const brake = d.ecu('brake');
        const old = d.manifest();
        assert.equal((await m.send(d, old)).status, 200);
        now += REPORT_WINDOW_MS + 3600_000;
        for (let i = 0; i < 20; i++) assert.equal((await m.send(d, d.manifest())).status, 200, 'fresh reports pass after the move');
        const oldReport = old.signed.ecuVersionReports[brake.serial]!;
        const memory = (await m.director.services.store.getDevice(d.id))!.recentNonces[brake.serial]!;
        assert.ok(!memory.seen.some(([n]) => n === oldReport.signed.nonce), 'the old nonce is no longer remembered');
        const r = await m.send(d, d.manifest({ reports: { [brake.serial]: oldReport } }));
        assert.equal(r.status, 422);
        assert.deepEqual([r.body.error.code, r.body.error.ecuSerial, r.body.error.timestamp], ['STALE_REPORT', brake.serial, oldReport.signed.timestamp]);
        const events = (await m.admin('GET', `/api/v1/admin/devices/${d.id}/events`)).body.events;
        assert.deepEqual(events.map((e: any) => [e.kind, e.code, e.ecuSerial]), [['manifest_refused', 'STALE_REPORT', brake.serial]]);
      } finally {
        await m.close();
      }
    });
  });

  describe('assignments the image repository does not back', () => {
    const cases: Array<[string, (d: SimDevice) => Record<string, unknown>, string]> = [
      ['an unknown image', (d) => ({ ecuSerial: d.ecu('brake').serial, image: 'nope.bin' }), 'missing'],
      ['another length', (d) => ({ ecuSerial: d.ecu('brake').serial, image: 'brake-2.bin', length: FW.byteLength + 1 }), 'length'],
      ['another hash', (d) => ({ ecuSerial: d.ecu('brake').serial, image: 'brake-2.bin', hashes: { sha256: 'ab'.repeat(32) } }), 'hashes'],
      ['the wrong hardware ID', (d) => ({ ecuSerial: d.primary.serial, image: 'brake-2.bin' }), 'hardwareId'],
    ];
    for (const [name, request, field] of cases) {
      it(`refuses ${name} and changes nothing`, async () => {
        const d = new SimDevice(`refuse-${field}`);
        await h.register(d);
        const before = (await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body;
        const r = await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [request(d)] });
        assert.equal(r.status, 422);
        assert.equal(r.body.error.code, 'ASSIGNMENT_REFUSED');
        assert.equal(r.body.error.field, field);
        if (field === 'missing') assert.match(r.body.error.message, /nope\.bin to refuse-missing\/.*: the image repository does not list it$/);
        const afterwards = (await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body;
        assert.deepEqual(afterwards.assignments, []);
        assert.deepEqual(afterwards.metadata, before.metadata);
      });
    }

    it('refuses a release counter below the installed one', async () => {
      const d = new SimDevice('refuse-rollback');
      await h.register(d);
      d.ecu('brake').releaseCounter = 5;
      assert.equal((await h.send(d, d.manifest())).status, 200);
      const r = await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image: 'brake-2.bin' }] });
      assert.equal(r.status, 422);
      assert.equal(r.body.error.field, 'releaseCounter');
    });
  });

  describe('manifests', () => {
    it('completes an assignment when every ECU reports its image, with progress in between', async () => {
      const d = new SimDevice('ok-1');
      await h.register(d);
      const info = h.imageRepo.builder.targets.targets['brake-2.bin']!;
      const a = (await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image: 'brake-2.bin' }] })).body;
      assert.equal((await h.send(d, d.manifest())).status, 200);
      assert.equal((await h.admin('GET', `/api/v1/admin/assignments/${a.id}`)).body.status, 'pending');
      assert.equal((await h.api('POST', `/api/v1/devices/${d.id}/progress`, { state: 'downloading', done: 1, total: 10 }, d.headers())).status, 204);
      assert.equal((await h.api('POST', `/api/v1/devices/${d.id}/progress`, { state: 'installing', ecuSerial: d.ecu('brake').serial }, d.headers())).status, 204);
      assert.equal((await h.api('POST', `/api/v1/devices/${d.id}/progress`, { state: 'downloading' }, d.headers())).status, 204);
      assert.equal((await h.admin('GET', `/api/v1/admin/assignments/${a.id}`)).body.status, 'installing');
      d.install('brake', 'brake-2.bin', info, 2);
      const r = await h.send(d, d.manifest({ installationResult: { directorTargetsVersion: a.targetsVersion, success: true, code: 'OK', description: 'ok', ecus: [] } }));
      assert.deepEqual(r.body.changed, [{ id: a.id, status: 'succeeded' }]);
      const view = (await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body;
      assert.equal(view.ecus.find((e: any) => e.serial === d.ecu('brake').serial).installed.filename, 'brake-2.bin');
      assert.equal(view.ecus.find((e: any) => e.serial === d.ecu('brake').serial).releaseCounter, 2);
      assert.equal((await h.admin('GET', `/api/v1/admin/devices/${d.id}/manifests`)).body.manifests.length, 2);
    });

    it('keeps the latest progress of each ECU on the assignment and shows it to admins', async () => {
      const d = new SimDevice('progress-1');
      await h.register(d);
      const [gw, brake] = [d.primary.serial, d.ecu('brake').serial];
      const a = (await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, {
        ecus: [{ ecuSerial: brake, image: 'brake-2.bin' }, { ecuSerial: gw, image: 'gw-2.bin' }],
      })).body;
      const progress = async (body: unknown) => (await h.api('POST', `/api/v1/devices/${d.id}/progress`, body, d.headers())).status;
      assert.equal(await progress({ ecuSerial: gw, state: 'downloading', done: 100, total: 1000 }), 204);
      assert.equal(await progress({ ecuSerial: gw, state: 'downloading', done: 700, total: 1000 }), 204);
      assert.equal(await progress({ ecuSerial: brake, state: 'downloading', done: 5, total: 50 }), 204);
      const downloading = (await h.admin('GET', `/api/v1/admin/assignments/${a.id}`)).body;
      assert.equal(downloading.status, 'downloading');
      assert.deepEqual(Object.keys(downloading.progress).sort(), [brake, gw].sort());
      assert.deepEqual({ ...downloading.progress[gw], at: undefined }, { phase: 'downloading', done: 700, total: 1000, at: undefined });
      assert.ok(Date.parse(downloading.progress[gw].at) > 0);

      assert.equal(await progress({ ecuSerial: brake, state: 'installing', done: 20, total: 50 }), 204);
      const view = (await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body;
      const shown = view.assignments.find((x: any) => x.id === a.id);
      assert.equal(shown.status, 'installing');
      assert.deepEqual([shown.progress[brake].phase, shown.progress[brake].done], ['installing', 20]);
      assert.equal(shown.progress[gw].done, 700);
      const listed = (await h.admin('GET', `/api/v1/admin/devices/${d.id}/assignments`)).body.assignments.find((x: any) => x.id === a.id);
      assert.deepEqual(listed.progress, shown.progress);
    });

    it('refuses progress with more done than total, and changes nothing', async () => {
      const d = new SimDevice('progress-2');
      await h.register(d);
      const brake = d.ecu('brake').serial;
      const a = (await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: brake, image: 'brake-2.bin' }] })).body;
      const r = await h.api('POST', `/api/v1/devices/${d.id}/progress`, { ecuSerial: brake, state: 'downloading', done: 11, total: 10 }, d.headers());
      assert.equal(r.status, 400);
      assert.equal(r.body.error.field, 'done');
      const after = (await h.admin('GET', `/api/v1/admin/assignments/${a.id}`)).body;
      assert.deepEqual([after.status, after.progress], ['pending', {}]);
    });

    it('shows the release counter each ECU reports, also one lower than before', async () => {
      const d = new SimDevice('counter-1');
      await h.register(d);
      d.ecu('brake').releaseCounter = 5;
      assert.equal((await h.send(d, d.manifest())).status, 200);
      const counter = async () => (await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body.ecus.find((e: any) => e.serial === d.ecu('brake').serial).releaseCounter;
      assert.equal(await counter(), 5);
      d.ecu('brake').releaseCounter = 3; // e.g. a workshop reflashed it
      assert.equal((await h.send(d, d.manifest())).status, 200);
      assert.equal(await counter(), 3);
    });

    it('fails an assignment on an error report and records verification failures as attacks', async () => {
      const d = new SimDevice('fail-1');
      await h.register(d);
      const a = (await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image: 'brake-2.bin' }] })).body;
      const result = { directorTargetsVersion: a.targetsVersion, success: false, code: 'VERIFICATION_FAILED', description: 'bad hash',
        ecus: [{ ecuSerial: d.ecu('brake').serial, success: false, code: 'VERIFICATION_FAILED', description: 'hash mismatch', filename: 'brake-2.bin' }] };
      await h.send(d, d.manifest({ installationResult: result, attacks: { [d.ecu('brake').serial]: 'targets signature invalid' } }));
      await h.send(d, d.manifest({ installationResult: result })); // the device repeats its last result
      const view = (await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body;
      const assignment = view.assignments.find((x: any) => x.id === a.id);
      assert.equal(assignment.status, 'failed');
      assert.equal(assignment.errorCode, 'VERIFICATION_FAILED');
      assert.deepEqual(view.events.map((e: any) => [e.kind, e.code]).sort(), [['attack', 'ATTACK_DETECTED'], ['attack', 'VERIFICATION_FAILED']]);
      assert.deepEqual(view.targets, {}, 'a failed assignment drops out of targets');
    });

    it('records endless data and slow retrieval results as attacks, other download failures as installation failures', async () => {
      const d = new SimDevice('dl-1', ['gw', 'brake', 'door']);
      await h.register(d);
      const [gw, brake, door] = d.ecus.map((e) => e.serial) as [string, string, string];
      const fail = (ecuSerial: string, code: string) => ({ ecuSerial, success: false, code, description: `${code.toLowerCase()} here`, filename: 'x.bin' });
      const result = { directorTargetsVersion: 1, success: false, code: 'ENDLESS_DATA', description: 'refused',
        ecus: [fail(gw, 'ENDLESS_DATA'), fail(brake, 'SLOW_RETRIEVAL'), fail(door, 'DOWNLOAD_FAILED')] };
      assert.equal((await h.send(d, d.manifest({ installationResult: result }))).status, 200);
      const events = (await h.admin('GET', `/api/v1/admin/devices/${d.id}/events`)).body.events;
      assert.deepEqual(events.map((e: any) => [e.kind, e.code, e.ecuSerial]), [
        ['attack', 'ENDLESS_DATA', gw], ['attack', 'SLOW_RETRIEVAL', brake], ['installation_failure', 'DOWNLOAD_FAILED', door],
      ]);
    });

    it('records each named Uptane/TUF attack under its own code (core attack-codes.ts)', async () => {
      const d = new SimDevice('named-1', ['gw', 'brake', 'door']);
      await h.register(d);
      const [gw, brake, door] = d.ecus.map((e) => e.serial) as [string, string, string];
      const fail = (ecuSerial: string, code: string) => ({ ecuSerial, success: false, code, description: `${code.toLowerCase()} here`, filename: 'x.bin' });
      const result = { directorTargetsVersion: 1, success: false, code: 'MIX_AND_MATCH', description: 'refused',
        ecus: [fail(gw, 'MIX_AND_MATCH'), fail(brake, 'FREEZE'), fail(door, 'WRONG_HARDWARE')] };
      assert.equal((await h.send(d, d.manifest({ installationResult: result }))).status, 200);
      const events = (await h.admin('GET', `/api/v1/admin/devices/${d.id}/events`)).body.events;
      assert.deepEqual(events.map((e: any) => [e.kind, e.code, e.ecuSerial]), [
        ['attack', 'MIX_AND_MATCH', gw], ['attack', 'FREEZE', brake], ['attack', 'WRONG_HARDWARE', door],
      ]);
    });

    it('keeps an assignment open through retryable failures (slow retrieval, download failure); a later success completes it', async () => {
      const d = new SimDevice('retry-1', ['gw', 'brake', 'door']);
      await h.register(d);
      const [, brake, door] = d.ecus.map((e) => e.serial) as [string, string, string];
      const a = (await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: brake, image: 'brake-2.bin' }] })).body;
      const failure = (code: string) => ({
        directorTargetsVersion: a.targetsVersion, success: false, code, description: `${code} on brake`,
        ecus: [{ ecuSerial: brake, success: false, code, description: `${code.toLowerCase()} here`, filename: 'brake-2.bin' },
          { ecuSerial: door, success: false, code: 'ABORTED', description: `not installed: ${brake} failed` }],
      });
      const status = async () => (await h.admin('GET', `/api/v1/admin/assignments/${a.id}`)).body.status;
      assert.deepEqual((await h.send(d, d.manifest({ installationResult: failure('SLOW_RETRIEVAL') }))).body.changed, []);
      assert.equal(await status(), 'pending');
      assert.deepEqual((await h.send(d, d.manifest({ installationResult: failure('DOWNLOAD_FAILED') }))).body.changed, []);
      assert.equal(await status(), 'pending');
      const events = (await h.admin('GET', `/api/v1/admin/devices/${d.id}/events`)).body.events;
      assert.deepEqual(events.map((e: any) => [e.kind, e.code, e.ecuSerial]).filter(([, , ecu]: string[]) => ecu === brake),
        [['attack', 'SLOW_RETRIEVAL', brake], ['installation_failure', 'DOWNLOAD_FAILED', brake]]);
      assert.ok((await verifiedTargets(h, d)).targets['brake-2.bin'], 'the image stays in the targets');
      d.install('brake', 'brake-2.bin', h.imageRepo.builder.targets.targets['brake-2.bin']!, 2);
      const ok = { directorTargetsVersion: a.targetsVersion, success: true, code: 'OK', description: 'installed', ecus: [{ ecuSerial: brake, success: true, code: 'OK', description: 'installed' }] };
      assert.deepEqual((await h.send(d, d.manifest({ installationResult: ok }))).body.changed, [{ id: a.id, status: 'succeeded' }]);
      // A failure that is not retryable still ends the assignment.
      const b = (await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.primary.serial, image: 'gw-2.bin' }] })).body;
      const bad = { directorTargetsVersion: b.targetsVersion, success: false, code: 'INSTALL_FAILED', description: 'flash error',
        ecus: [{ ecuSerial: d.primary.serial, success: false, code: 'INSTALL_FAILED', description: 'flash error' }] };
      assert.deepEqual((await h.send(d, d.manifest({ installationResult: bad }))).body.changed, [{ id: b.id, status: 'failed' }]);
    });

    it('keeps the newest events per device, and only its own', async () => {
      const store = h.director.services.store;
      const at = new Date().toISOString();
      await store.transaction(async () => {
        for (let i = 0; i < EVENTS_PER_DEVICE + 5; i++) await store.insertEvent({ deviceId: 'bound-a', ecuSerial: null, kind: 'manifest_refused', code: 'MANIFEST_REPLAY', detail: `#${i}`, at });
        await store.insertEvent({ deviceId: 'bound-b', ecuSerial: null, kind: 'attack', code: 'ATTACK_DETECTED', detail: 'b', at });
      });
      const a = await store.eventsOf('bound-a');
      assert.equal(a.length, EVENTS_PER_DEVICE);
      assert.equal(a[0]!.detail, '#5', 'the oldest five went');
      assert.equal(a.at(-1)!.detail, `#${EVENTS_PER_DEVICE + 4}`);
      assert.deepEqual((await store.eventsOf('bound-b')).map((e) => e.detail), ['b']);
    });

    it('fails an assignment when an ECU runs an image that is neither old nor assigned', async () => {
      const d = new SimDevice('odd-1');
      await h.register(d);
      await h.send(d, d.manifest());
      const a = (await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image: 'brake-2.bin' }] })).body;
      d.ecu('brake').installed = { filename: 'other.bin', length: 3, hashes: { sha256: '11'.repeat(32) } };
      await h.send(d, d.manifest());
      assert.equal((await h.admin('GET', `/api/v1/admin/assignments/${a.id}`)).body.errorCode, 'UNEXPECTED_IMAGE');
    });

    describe('attacks (each refused, nothing changes but the security event log)', () => {
      let d: SimDevice;
      let snapshot: unknown;
      let eventCount = 0;
      const view = async () => {
        const { events, ...rest } = (await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body;
        return { events: events as any[], rest };
      };
      before(async () => {
        d = new SimDevice('atk-1');
        await h.register(d);
        assert.equal((await h.send(d, d.manifest())).status, 200);
        snapshot = (await view()).rest;
      });
      /** Nothing changed but one `manifest_refused` event per refusal, with its code and ECU, in the log. */
      const unchanged = async (...refusals: Array<[code: string, ecuSerial?: string]>) => {
        const now = await view();
        assert.deepEqual(now.rest, snapshot);
        const fresh = now.events.slice(eventCount);
        assert.deepEqual(fresh.map((e) => [e.kind, e.code, e.ecuSerial]), refusals.map(([code, ecu]) => ['manifest_refused', code, ecu ?? null]));
        assert.ok(fresh.every((e) => e.deviceId === d.id && /via http/.test(e.detail) && !Number.isNaN(Date.parse(e.at))));
        eventCount = now.events.length;
      };

      it('a forged ECU report', async () => {
        const m = d.manifest();
        const brake = d.ecu('brake');
        m.signed.ecuVersionReports[brake.serial]!.signatures[0]!.sig = Buffer.from(Ed25519Signer.generate().sign(utf8('x'))).toString('hex');
        // re-sign the manifest so only the ECU report is bad
        const resigned = (await import('@upfleet/core')).signVehicleManifest(m.signed, d.primary.signer);
        const r = await h.send(d, resigned);
        assert.equal(r.status, 422);
        assert.equal(r.body.error.code, 'BAD_ECU_SIGNATURE');
        assert.equal(r.body.error.ecuSerial, brake.serial);
        await unchanged(['BAD_ECU_SIGNATURE', brake.serial]);
      });

      it('a manifest signed by another key', async () => {
        const m = d.manifest();
        const forged = (await import('@upfleet/core')).signVehicleManifest(m.signed, Ed25519Signer.generate());
        assert.equal((await h.send(d, forged)).body.error.code, 'BAD_SIGNATURE');
        await unchanged(['BAD_SIGNATURE']);
      });

      it('a replayed manifest', async () => {
        const r = await h.send(d, d.manifest({ counter: 1 }));
        assert.equal(r.status, 409);
        assert.equal(r.body.error.code, 'MANIFEST_REPLAY');
        assert.equal(r.body.error.lastCounter, 1);
        await unchanged(['MANIFEST_REPLAY']);
      });

      it('a retransmission of the manifest accepted last is refused but not recorded; an older one is a replay', async () => {
        const first = d.manifest();
        assert.equal((await h.send(d, first)).status, 200);
        snapshot = (await view()).rest;
        const again = await h.send(d, first); // the response was lost, the device sends it again
        assert.equal(again.status, 409);
        assert.equal(again.body.error.lastCounter, first.signed.counter);
        await unchanged();
        assert.equal((await h.send(d, d.manifest())).status, 200);
        snapshot = (await view()).rest;
        assert.equal((await h.send(d, first)).status, 409);
        await unchanged(['MANIFEST_REPLAY']);
      });

      it('records nothing for a sender the channel did not authenticate', async () => {
        const manifests = h.director.services.manifests;
        const bytes = utf8(JSON.stringify(d.manifest({ counter: 1 })));
        await assert.rejects(manifests.ingest(d.id, bytes, 'mqtt', false), { code: 'MANIFEST_REPLAY' });
        const r = await h.api('POST', `/api/v1/devices/${d.id}/manifest`, d.manifest({ counter: 1 }), { authorization: 'UpfleetDevice nope' });
        assert.equal(r.status, 401);
        const other = new SimDevice('atk-other');
        await h.register(other);
        // Another device's valid token on this device's URL: 403, and nothing in this device's log.
        assert.equal((await h.api('POST', `/api/v1/devices/${d.id}/manifest`, d.manifest({ counter: 1 }), other.headers())).status, 403);
        await unchanged();
        await assert.rejects(manifests.ingest('atk-nobody', bytes, 'function', true), { code: 'DEVICE_MISMATCH' });
        assert.deepEqual(await h.director.services.store.eventsOf('atk-nobody'), [], 'no log for a device that does not exist');
      });

      it('an unknown ECU and a missing ECU', async () => {
        const stranger = new SimDevice('atk-1', ['gw', 'brake', 'radio']);
        stranger.ecus[0] = d.ecus[0]!;
        stranger.ecus[1] = d.ecus[1]!;
        stranger.counter = 10;
        assert.equal((await h.send(d, stranger.manifest())).body.error.code, 'UNKNOWN_ECU');
        const fewer = new SimDevice('atk-1', ['gw']);
        fewer.ecus[0] = d.ecus[0]!;
        fewer.counter = 10;
        assert.equal((await h.send(d, fewer.manifest())).body.error.code, 'MISSING_ECU');
        await unchanged(['UNKNOWN_ECU', stranger.ecus[2]!.serial], ['MISSING_ECU', d.ecus[1]!.serial]);
      });

      it('a stale nonce', async () => {
        assert.equal((await h.send(d, d.manifest({ nonce: 'fixed-nonce' }))).status, 200);
        snapshot = (await view()).rest;
        // The nonce of an accepted manifest, reused with a fresh counter.
        const r = await h.send(d, d.manifest({ nonce: 'fixed-nonce', counter: 100 }));
        assert.equal(r.body.error.code, 'STALE_NONCE');
        await unchanged(['STALE_NONCE', d.primary.serial]);
      });

      it('a report replayed 20 cycles later, within the window (its nonce is still on record)', async () => {
        const brake = d.ecu('brake');
        const first = d.manifest();
        assert.equal((await h.send(d, first)).status, 200);
        for (let i = 0; i < 20; i++) assert.equal((await h.send(d, d.manifest())).status, 200);
        snapshot = (await view()).rest;
        const replay = d.manifest({ reports: { [brake.serial]: first.signed.ecuVersionReports[brake.serial]! } });
        const r = await h.send(d, replay);
        assert.equal(r.status, 422);
        assert.deepEqual([r.body.error.code, r.body.error.ecuSerial, r.body.error.nonce], ['STALE_NONCE', brake.serial, first.signed.ecuVersionReports[brake.serial]!.signed.nonce]);
        await unchanged(['STALE_NONCE', brake.serial]);
      });

      it('malformed JSON', async () => {
        const r = await h.api('POST', `/api/v1/devices/${d.id}/manifest`, '{"signed":', d.headers());
        assert.equal(r.status, 400);
        assert.equal(r.body.error.code, 'MALFORMED_MANIFEST');
        await unchanged(['MALFORMED_MANIFEST']);
      });

      it('serves the log at /events, filtered by kind', async () => {
        const all = (await h.admin('GET', `/api/v1/admin/devices/${d.id}/events`)).body.events;
        assert.equal(all.length, eventCount);
        const refused = (await h.admin('GET', `/api/v1/admin/devices/${d.id}/events?kind=manifest_refused`)).body.events;
        assert.deepEqual(refused, all.filter((e: any) => e.kind === 'manifest_refused'));
        assert.equal((await h.admin('GET', `/api/v1/admin/devices/${d.id}/events?kind=bogus`)).status, 400);
        assert.equal((await h.admin('GET', '/api/v1/admin/devices/atk-nobody/events')).status, 404);
        assert.equal((await h.api('GET', `/api/v1/admin/devices/${d.id}/events`, undefined, d.headers())).status, 401);
      });
    });
  });

  it('serves OpenAPI and metrics', async () => {
    const doc = (await h.api('GET', '/api/v1/openapi.json')).body;
    assert.equal(doc.openapi, '3.1.0');
    assert.ok(doc.paths['/api/v1/admin/devices/{deviceId}/assignments'].post);
    const metrics = await (await fetch(`${h.director.url}/metrics`)).text();
    assert.match(metrics, /upfleet_director_manifests_accepted_total\{via="http"\} [1-9]/);
    assert.match(metrics, /upfleet_director_manifests_rejected_total\{via="http",code="MANIFEST_REPLAY"\} [1-9]/);
    assert.ok(doc.paths['/api/v1/admin/devices/{deviceId}/events'].get);
    assert.equal(doc.components.schemas.Assignment.properties.progress.additionalProperties.$ref, '#/components/schemas/EcuProgress');
    assert.deepEqual(doc.components.schemas.EcuProgress.required, ['phase', 'done', 'total', 'at']);
  });

  it('finds an image published after the cached view was taken', async () => {
    const d = new SimDevice('late-1');
    await h.register(d);
    h.imageRepo.addImage('early.bin', utf8('early'), ['brake'], 1);
    assert.equal((await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image: 'early.bin' }] })).status, 201);
    h.imageRepo.addImage('late.bin', utf8('late'), ['brake'], 2);
    const r = await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image: 'late.bin' }] });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.items[0].releaseCounter, 2);
  });

  it('refuses to start with the wrong online passphrase, and answers 400/404/405 with typed errors', async () => {
    await assert.rejects(startDirector({ dir: h.dir, imageRepoUrl: h.imageRepo.url, adminToken: 'a', provisioningToken: 'p', onlinePassphrase: 'wrong', mqtt: 'none' }), KeyFileError);
    const missing = await h.api('GET', '/api/v1/nothing');
    assert.deepEqual([missing.status, missing.body.error.code], [404, 'NOT_FOUND']);
    const method = await h.api('DELETE', '/api/v1/admin/devices');
    assert.deepEqual([method.status, method.body.error.code], [405, 'METHOD_NOT_ALLOWED']);
    const bad = await h.admin('POST', '/api/v1/admin/devices', { deviceId: 'no/slashes' });
    assert.deepEqual([bad.status, bad.body.error.code, bad.body.error.field], [400, 'BAD_REQUEST', 'deviceId']);
    const badEncoding = await h.admin('GET', '/api/v1/admin/devices/%ZZ');
    assert.deepEqual([badEncoding.status, badEncoding.body.error.code], [400, 'BAD_REQUEST']);
    const traversal = await h.api('POST', '/api/v1/devices/..%2Fadmin/register', {}, { authorization: `Bearer ${PROVISIONING_TOKEN}` });
    assert.deepEqual([traversal.status, traversal.body.error.field], [400, 'deviceId']);
  });

  // Last in this suite: it restarts the shared director.
  it('loses nothing across a restart', async () => {
    const info = h.imageRepo.addImage('brake-3.bin', utf8('brake 3'), ['brake'], 3);
    const d = new SimDevice('restart-1');
    await h.register(d);
    await h.send(d, d.manifest());
    const a = (await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image: 'brake-3.bin' }] })).body;
    const before = (await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body;
    const targetsBefore = await verifiedTargets(h, d);
    await h.restart();
    assert.deepEqual((await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body, before);
    assert.deepEqual((await verifiedTargets(h, d)).toJSON(), targetsBefore.toJSON());
    assert.equal((await h.send(d, d.manifest({ counter: 1 }))).body.error.code, 'MANIFEST_REPLAY');
    d.install('brake', 'brake-3.bin', info, 3);
    assert.equal((await h.send(d, d.manifest())).body.changed[0].status, 'succeeded');
    assert.equal((await h.admin('GET', `/api/v1/admin/assignments/${a.id}`)).body.status, 'succeeded');
  });
});

describe('image repository metadata that does not verify', () => {
  it('refuses the assignment (502 with the verification error) and stores nothing', async () => {
    const h = await harness();
    try {
      const d = new SimDevice('tamper-1');
      await h.register(d);
      const info = h.imageRepo.addImage('evil.bin', utf8('genuine'), ['brake'], 1);
      const version = h.imageRepo.builder.targets.version;
      // Swap the listed hash for the attacker's image, keeping the old signature.
      h.imageRepo.tamper(`metadata/${version}.targets.json`, (bytes) =>
        utf8(Buffer.from(bytes).toString().replace(info.hashes.sha256!, 'ee'.repeat(32))));
      const r = await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image: 'evil.bin' }] });
      assert.equal(r.status, 502);
      assert.equal(r.body.error.code, 'LENGTH_OR_HASH_MISMATCH'); // snapshot pins the targets file's hash
      assert.deepEqual((await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body.assignments, []);
    } finally {
      await h.close();
    }
  });
});
