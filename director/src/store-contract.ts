/**
 * The DirectorStore contract, one suite for every store: sqlite-store.test.ts and
 * pg-store.test.ts run it against a fresh database each. It exercises every
 * method, transaction rollback (whole and nested), and row locks under
 * concurrency (no lost update), so both stores are held to the same behaviour.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  EVENTS_PER_DEVICE,
  type AssignmentRecord,
  type CampaignRecord,
  type DeviceRecord,
  type DirectorStore,
  type EcuRecord,
  type RepoState,
} from './store.ts';

export interface StoreUnderTest {
  store: DirectorStore;
  /** A second store on the same database (another process, as far as the database knows). */
  openAnother(): Promise<DirectorStore>;
  cleanup(): Promise<void>;
}

const T0 = '2026-01-01T00:00:00.000Z';

export function device(id: string, fields: Partial<DeviceRecord> = {}): DeviceRecord {
  return { id, status: 'active', tags: ['eu', 'fleet'], manifestCounter: -1, recentNonces: {}, online: false, lastSeen: null, createdAt: T0, updatedAt: T0, ...fields };
}

function ecu(serial: string, deviceId: string, primary: boolean): EcuRecord {
  return {
    serial, deviceId, hardwareId: primary ? 'gw' : 'brake', primary, releaseCounter: 0, installed: null,
    publicKey: { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: 'ab'.repeat(32) } },
  };
}

function assignment(id: string, deviceId: string, fields: Partial<AssignmentRecord> = {}): AssignmentRecord {
  return {
    id, deviceId, campaignId: null, status: 'pending', targetsVersion: 2, errorCode: null, errorMessage: null, createdAt: T0, updatedAt: T0, progress: {},
    items: [{ ecuSerial: `${deviceId}-brake`, hardwareId: 'brake', image: 'brake-2.bin', length: 9, hashes: { sha256: 'cd'.repeat(32) }, releaseCounter: 2, version: '2.0.0', previous: null }],
    ...fields,
  };
}

function campaign(id: string, fields: Partial<CampaignRecord> = {}): CampaignRecord {
  return {
    id, status: 'draft', devices: [], wavesLaunched: 0, reason: null, createdAt: T0, updatedAt: T0,
    spec: { name: `c-${id}`, images: [{ hardwareId: 'brake', image: 'brake-2.bin' }], tags: ['eu'], waves: [50, 100], successThreshold: 0.9 },
    ...fields,
  };
}

export function storeContract(name: string, open: () => Promise<StoreUnderTest>): void {
  describe(`DirectorStore contract: ${name}`, () => {
    let t: StoreUnderTest;
    let s: DirectorStore;
    before(async () => {
      t = await open();
      s = t.store;
    });
    after(() => t.cleanup());

    describe('devices', () => {
      it('inserts, reads, lists by status in id order, and updates only the given fields', async () => {
        await s.insertDevice(device('dev-b', { recentNonces: { 'dev-b-brake': { seen: [['n1', 5]], floor: 0 } } }));
        await s.insertDevice(device('Dev-A', { status: 'pending' }));
        await s.insertDevice(device('dev-c'));
        assert.deepEqual(await s.getDevice('dev-b'), device('dev-b', { recentNonces: { 'dev-b-brake': { seen: [['n1', 5]], floor: 0 } } }));
        assert.equal(await s.getDevice('nobody'), undefined);
        assert.deepEqual((await s.listDevices()).map((d) => d.id), ['Dev-A', 'dev-b', 'dev-c'], 'bytewise order');
        assert.deepEqual((await s.listDevices({ status: 'pending' })).map((d) => d.id), ['Dev-A']);
        await s.updateDevice('dev-c', { online: true, manifestCounter: 2 ** 40, lastSeen: T0, tags: ['x'] });
        assert.deepEqual(await s.getDevice('dev-c'), device('dev-c', { online: true, manifestCounter: 2 ** 40, lastSeen: T0, tags: ['x'] }));
        await s.updateDevice('dev-c', {});
        await assert.rejects(s.insertDevice(device('dev-c')), 'the id is unique');
      });
    });

    describe('ECUs', () => {
      it('inserts, lists a device ECUs primary first, updates, deletes', async () => {
        await s.insertDevice(device('ecu-dev'));
        await s.insertEcu(ecu('ecu-dev-brake', 'ecu-dev', false));
        await s.insertEcu(ecu('ecu-dev-primary', 'ecu-dev', true));
        assert.deepEqual((await s.ecusOf('ecu-dev')).map((e) => [e.serial, e.primary]), [['ecu-dev-primary', true], ['ecu-dev-brake', false]]);
        const installed = { filename: 'brake-2.bin', length: 9, hashes: { sha256: 'cd'.repeat(32) } };
        await s.updateEcu('ecu-dev-brake', { installed, releaseCounter: 2 });
        assert.deepEqual(await s.getEcu('ecu-dev-brake'), { ...ecu('ecu-dev-brake', 'ecu-dev', false), installed, releaseCounter: 2 });
        await s.updateEcu('ecu-dev-brake', { installed: null });
        assert.equal((await s.getEcu('ecu-dev-brake'))!.installed, null);
        await s.deleteEcu('ecu-dev-brake');
        assert.equal(await s.getEcu('ecu-dev-brake'), undefined);
        assert.deepEqual(await s.ecusOf('nobody'), []);
        await assert.rejects(s.insertEcu(ecu('orphan', 'no-such-device', false)), 'an ECU belongs to a device');
      });

      it('reads what manifest checks need in one view: status, counter, the ECUs primary first', async () => {
        await s.insertDevice(device('view-dev', { manifestCounter: 7, status: 'decommissioned' }));
        assert.deepEqual(await s.ingestionView('view-dev'), { device: { id: 'view-dev', status: 'decommissioned', manifestCounter: 7 }, ecus: [] }, 'a device without ECUs');
        await s.insertEcu(ecu('view-dev-brake', 'view-dev', false));
        await s.insertEcu(ecu('view-dev-primary', 'view-dev', true));
        const view = await s.ingestionView('view-dev');
        assert.deepEqual(view.device, { id: 'view-dev', status: 'decommissioned', manifestCounter: 7 });
        assert.deepEqual(view.ecus, await s.ecusOf('view-dev'));
        assert.equal(view.ecus[0]!.serial, 'view-dev-primary');
        assert.deepEqual(await s.ingestionView('nobody'), { device: undefined, ecus: [] });
      });
    });

    describe('assignments', () => {
      it('keeps insertion order per device and per campaign, and lists the open ones', async () => {
        await s.insertAssignment(assignment('a1', 'as-dev'));
        await s.insertAssignment(assignment('a0', 'as-dev', { campaignId: 'camp-1' }));
        await s.insertAssignment(assignment('a2', 'other-dev', { campaignId: 'camp-1' }));
        await s.insertAssignment(assignment('a3', 'as-dev', { status: 'succeeded' }));
        assert.deepEqual((await s.assignmentsOf('as-dev')).map((a) => a.id), ['a1', 'a0', 'a3']);
        assert.deepEqual((await s.openAssignmentsOf('as-dev')).map((a) => a.id), ['a1', 'a0']);
        assert.deepEqual((await s.assignmentsOfCampaign('camp-1')).map((a) => a.id), ['a0', 'a2']);
        assert.deepEqual(await s.getAssignment('a1'), assignment('a1', 'as-dev'));
        assert.equal(await s.getAssignment('nope'), undefined);
      });

      it('updates status, error, version and progress', async () => {
        const progress = { 'as-dev-brake': { phase: 'installing' as const, done: 5, total: 9, at: T0 } };
        await s.updateAssignment('a1', { status: 'failed', errorCode: 'E', errorMessage: 'm', targetsVersion: 7, progress, updatedAt: 'later' });
        assert.deepEqual(await s.getAssignment('a1'), assignment('a1', 'as-dev', { status: 'failed', errorCode: 'E', errorMessage: 'm', targetsVersion: 7, progress, updatedAt: 'later' }));
        assert.deepEqual((await s.openAssignmentsOf('as-dev')).map((a) => a.id), ['a0']);
      });
    });

    describe('events and manifests', () => {
      it('keeps the newest EVENTS_PER_DEVICE events per device, oldest first', async () => {
        await s.transaction(async () => {
          for (let i = 0; i < EVENTS_PER_DEVICE + 3; i++) {
            await s.insertEvent({ deviceId: 'ev-a', ecuSerial: i === 0 ? null : 'ev-a-brake', kind: 'attack', code: 'ATTACK_DETECTED', detail: `#${i}`, at: T0 });
          }
        });
        await s.insertEvent({ deviceId: 'ev-b', ecuSerial: null, kind: 'manifest_refused', code: 'MANIFEST_REPLAY', detail: 'b', at: T0 });
        const a = await s.eventsOf('ev-a');
        assert.equal(a.length, EVENTS_PER_DEVICE);
        assert.deepEqual([a[0]!.detail, a.at(-1)!.detail], ['#3', `#${EVENTS_PER_DEVICE + 2}`]);
        assert.ok(a.every((e, i) => i === 0 || e.id > a[i - 1]!.id));
        const [b] = await s.eventsOf('ev-b');
        assert.deepEqual({ ...b, id: 0 }, { id: 0, deviceId: 'ev-b', ecuSerial: null, kind: 'manifest_refused', code: 'MANIFEST_REPLAY', detail: 'b', at: T0 });
      });

      it('lists a device manifests newest first, up to a limit', async () => {
        for (const counter of [1, 2, 3]) {
          await s.insertManifest({ deviceId: 'mf', counter, receivedAt: T0, via: counter === 2 ? 'mqtt' : 'http', summary: { digest: `d${counter}`, installed: {} } });
        }
        const latest = await s.manifestsOf('mf', 2);
        assert.deepEqual(latest.map((m) => [m.counter, m.via, m.summary.digest]), [[3, 'http', 'd3'], [2, 'mqtt', 'd2']]);
        assert.equal(typeof latest[0]!.id, 'number');
        assert.deepEqual(await s.manifestsOf('nobody', 5), []);
      });
    });

    describe('repository state and metadata files', () => {
      it('replaces the state, stores bytes exactly, deletes files', async () => {
        const state: RepoState = { deviceId: 'rs', targetsVersion: 1, targetsExpires: T0, snapshotVersion: 1, snapshotExpires: T0, timestampVersion: 1, timestampExpires: T0 };
        await s.putRepoState(state);
        await s.putRepoState({ ...state, targetsVersion: 2, timestampVersion: 3 });
        assert.deepEqual(await s.getRepoState('rs'), { ...state, targetsVersion: 2, timestampVersion: 3 });
        assert.equal(await s.getRepoState('nobody'), undefined);
        const bytes = new Uint8Array([0, 255, 1, 2, 3, 0]);
        await s.putMetadataFile('rs', '1.targets.json', bytes.subarray(1, 5));
        await s.putMetadataFile('rs', 'timestamp.json', bytes);
        await s.putMetadataFile('rs', 'timestamp.json', bytes.subarray(0, 2));
        assert.deepEqual(await s.getMetadataFile('rs', '1.targets.json'), new Uint8Array([255, 1, 2, 3]));
        assert.deepEqual(await s.getMetadataFile('rs', 'timestamp.json'), new Uint8Array([0, 255]));
        await s.deleteMetadataFile('rs', '1.targets.json');
        assert.equal(await s.getMetadataFile('rs', '1.targets.json'), undefined);
      });
    });

    describe('campaigns', () => {
      it('inserts, updates, reads, lists by creation time', async () => {
        await s.insertCampaign(campaign('c2', { createdAt: '2026-02-01T00:00:00.000Z' }));
        await s.insertCampaign(campaign('c1'));
        await s.updateCampaign('c2', { status: 'running', devices: ['x', 'y'], wavesLaunched: 1, reason: 'r', updatedAt: 'u' });
        assert.deepEqual(await s.getCampaign('c2'), campaign('c2', { createdAt: '2026-02-01T00:00:00.000Z', status: 'running', devices: ['x', 'y'], wavesLaunched: 1, reason: 'r', updatedAt: 'u' }));
        assert.deepEqual((await s.listCampaigns()).map((c) => c.id), ['c1', 'c2']);
        assert.equal(await s.getCampaign('nope'), undefined);
      });
    });

    describe('transactions', () => {
      it('commits every write of fn, and returns its result', async () => {
        const result = await s.transaction(async () => {
          await s.insertDevice(device('tx-ok'));
          await s.insertEcu(ecu('tx-ok-primary', 'tx-ok', true));
          return 42;
        });
        assert.equal(result, 42);
        assert.equal((await s.ecusOf('tx-ok')).length, 1);
      });

      it('rolls back every write when fn throws, and rethrows', async () => {
        const boom = new Error('boom');
        await assert.rejects(s.transaction(async () => {
          await s.insertDevice(device('tx-bad'));
          await s.putMetadataFile('tx-bad', 'timestamp.json', new Uint8Array([1]));
          await s.updateDevice('dev-b', { status: 'decommissioned' });
          throw boom;
        }), (e) => e === boom);
        assert.equal(await s.getDevice('tx-bad'), undefined);
        assert.equal(await s.getMetadataFile('tx-bad', 'timestamp.json'), undefined);
        assert.equal((await s.getDevice('dev-b'))!.status, 'active');
      });

      it('rolls back a database error (a duplicate key) with everything before it', async () => {
        await assert.rejects(s.transaction(async () => {
          await s.insertDevice(device('tx-dup'));
          await s.insertCampaign(campaign('c1'));
        }));
        assert.equal(await s.getDevice('tx-dup'), undefined);
      });

      it('rolls back a nested transaction alone when the outer one catches its error', async () => {
        await s.transaction(async () => {
          await s.insertDevice(device('tx-outer'));
          await assert.rejects(s.transaction(async () => {
            await s.insertDevice(device('tx-inner'));
            throw new Error('inner');
          }));
          await s.transaction(() => s.insertDevice(device('tx-inner-ok')));
        });
        assert.ok(await s.getDevice('tx-outer'));
        assert.equal(await s.getDevice('tx-inner'), undefined);
        assert.ok(await s.getDevice('tx-inner-ok'));
      });

      it('keeps uncommitted writes from other readers until commit', async () => {
        const other = await t.openAnother();
        try {
          let release!: () => void;
          const held = new Promise<void>((r) => (release = r));
          let inserted!: () => void;
          const written = new Promise<void>((r) => (inserted = r));
          const tx = s.transaction(async () => {
            await s.insertDevice(device('tx-hidden'));
            inserted();
            await held;
          });
          await written;
          assert.equal(await other.getDevice('tx-hidden'), undefined, 'not visible before commit');
          release();
          await tx;
          assert.ok(await other.getDevice('tx-hidden'), 'visible after commit');
        } finally {
          await other.close();
        }
      });

      it('loses no update when two stores change one device at once under its lock', async () => {
        const other = await t.openAnother();
        try {
          await s.insertDevice(device('tx-count', { manifestCounter: 0 }));
          const bump = (store: DirectorStore) => store.transaction(async () => {
            await store.lockDevice('tx-count');
            const { manifestCounter } = (await store.getDevice('tx-count'))!;
            await new Promise((r) => setTimeout(r, 1)); // let the other writer in, if it can
            await store.updateDevice('tx-count', { manifestCounter: manifestCounter + 1 });
          });
          await Promise.all(Array.from({ length: 10 }, (_, i) => bump(i % 2 ? s : other)));
          assert.equal((await s.getDevice('tx-count'))!.manifestCounter, 10);
        } finally {
          await other.close();
        }
      });

      it('locks a campaign row inside a transaction, and lock calls outside one do nothing', async () => {
        await s.lockDevice('dev-b');
        await s.lockCampaign('c1');
        await s.transaction(async () => {
          await s.lockCampaign('c1');
          await s.updateCampaign('c1', { reason: 'locked' });
        });
        assert.equal((await s.getCampaign('c1'))!.reason, 'locked');
      });
    });
  });
}
