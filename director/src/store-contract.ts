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
    id, status: 'draft', devices: [], wavesLaunched: 0, launchedCount: 0, reason: null, createdAt: T0, updatedAt: T0,
    spec: { name: `c-${id}`, images: [{ hardwareId: 'brake', image: 'brake-2.bin' }], tags: ['eu'], waves: [50, 100], successThreshold: 0.9 },
    ...fields,
  };
}

/**
 * Campaigns as a director before chunked launches left them (each wave launched whole), and
 * the count of launched devices the launch migration must give them: the end of their latest
 * wave, ceil(waves[k] * group / 100), as campaigns.ts computes it.
 */
export const WHOLE_WAVE_CAMPAIGNS: Array<{ id: string; waves: number[]; group: number; wavesLaunched: number; launchedCount: number }> = [
  { id: 'whole-a', waves: [33.3, 100], group: 7, wavesLaunched: 1, launchedCount: 3 },
  { id: 'whole-b', waves: [50, 100], group: 4, wavesLaunched: 1, launchedCount: 2 },
  { id: 'whole-c', waves: [1, 10, 50, 100], group: 250, wavesLaunched: 2, launchedCount: 25 },
  { id: 'whole-d', waves: [1, 100], group: 30, wavesLaunched: 1, launchedCount: 1 },
  { id: 'whole-e', waves: [0.5, 100], group: 3, wavesLaunched: 2, launchedCount: 3 },
  { id: 'whole-f', waves: [50, 100], group: 9, wavesLaunched: 0, launchedCount: 0 },
];

/** An INSERT of WHOLE_WAVE_CAMPAIGNS into the campaigns table as it was before the launch migration. */
export function wholeWaveCampaignsSql(): string {
  return WHOLE_WAVE_CAMPAIGNS.map((c) => {
    const devices = JSON.stringify(Array.from({ length: c.group }, (_, i) => `${c.id}-${i}`));
    const spec = JSON.stringify({ name: c.id, images: [], tags: [], waves: c.waves, successThreshold: 0.9 });
    return `INSERT INTO campaigns (id, status, spec, devices, waves_launched, reason, created_at, updated_at, group_size)
      VALUES ('${c.id}', '${c.wavesLaunched ? 'running' : 'draft'}', '${spec}', '${devices}', ${c.wavesLaunched}, NULL, '${T0}', '${T0}', ${c.group});`;
  }).join('\n');
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

      it('reads the primary key as stored, for device-token checks: the primary only, undefined without one', async () => {
        await s.insertDevice(device('pk-dev'));
        assert.equal(await s.primaryKeyJson('pk-dev'), undefined, 'no ECU yet');
        await s.insertEcu(ecu('pk-dev-brake', 'pk-dev', false));
        assert.equal(await s.primaryKeyJson('pk-dev'), undefined, 'a secondary only');
        await s.insertEcu(ecu('pk-dev-primary', 'pk-dev', true));
        const primary = (await s.ecusOf('pk-dev')).find((e) => e.primary)!;
        assert.deepEqual(JSON.parse((await s.primaryKeyJson('pk-dev'))!), primary.publicKey);
        assert.equal(await s.primaryKeyJson('nobody'), undefined);
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

      it('keeps the count of devices launched, and lists the running campaigns without their groups', async () => {
        await s.insertCampaign(campaign('launch-1', { status: 'running', devices: ['l1', 'l2', 'l3'], wavesLaunched: 1, launchedCount: 2 }));
        await s.insertCampaign(campaign('launch-2', { status: 'paused', devices: ['l4'], wavesLaunched: 1 }));
        assert.equal((await s.getCampaign('launch-1'))!.launchedCount, 2);
        await s.updateCampaign('launch-1', { launchedCount: 3 });
        await s.updateCampaign('launch-2', { launchedCount: 1 });
        const { devices: _devices, ...state } = campaign('launch-1', { status: 'running', wavesLaunched: 1, launchedCount: 3 });
        assert.deepEqual(await s.getCampaignState('launch-1'), { ...state, groupSize: 3 });
        assert.equal((await s.getCampaignState('launch-2'))!.launchedCount, 1);
        const running = (await s.runningCampaigns()).filter((c) => c.id.startsWith('launch-'));
        assert.deepEqual(running, [{ ...state, groupSize: 3 }], 'running ones only, without the group');
      });

      it("tells whether a device has an assignment of a campaign", async () => {
        await s.insertDevice(device('hca-dev'));
        await s.insertAssignment(assignment('hca-a1', 'hca-dev', { campaignId: 'hca-camp' }));
        await s.insertAssignment(assignment('hca-a2', 'hca-dev'));
        assert.equal(await s.hasCampaignAssignment('hca-camp', 'hca-dev'), true);
        assert.equal(await s.hasCampaignAssignment('hca-other', 'hca-dev'), false);
        assert.equal(await s.hasCampaignAssignment('hca-camp', 'dev-b'), false);
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

    describe('aggregates that do not grow with the fleet', () => {
      it('counts a campaign\'s assignments by status in the transaction of every write, and ignores those of no campaign', async () => {
        await s.insertAssignment(assignment('fs-a1', 'fs-dev1', { campaignId: 'fs-camp' }));
        await s.insertAssignment(assignment('fs-a2', 'fs-dev2', { campaignId: 'fs-camp' }));
        await s.insertAssignment(assignment('fs-a3', 'fs-dev3', { campaignId: 'fs-camp', status: 'failed' }));
        await s.insertAssignment(assignment('fs-a4', 'fs-dev3'));
        assert.deepEqual(await s.campaignCounts('fs-camp'), { pending: 2, failed: 1 });
        await s.updateAssignment('fs-a1', { status: 'downloading' });
        await s.updateAssignment('fs-a1', { progress: {} });
        await s.updateAssignment('fs-a4', { status: 'succeeded' });
        assert.deepEqual(await s.campaignCounts('fs-camp'), { pending: 1, downloading: 1, failed: 1 });
        await assert.rejects(s.transaction(async () => {
          await s.updateAssignment('fs-a2', { status: 'succeeded' });
          throw new Error('rolled back');
        }));
        assert.deepEqual(await s.campaignCounts('fs-camp'), { pending: 1, downloading: 1, failed: 1 }, 'a rollback takes the counts back too');
        await s.updateAssignment('fs-a2', { status: 'succeeded' });
        await s.updateAssignment('fs-a1', { status: 'succeeded' });
        assert.deepEqual(await s.campaignCounts('fs-camp'), { succeeded: 2, failed: 1 });
        assert.deepEqual(await s.campaignCounts('fs-none'), {});
      });

      it('reads a campaign without its group, with the group\'s size', async () => {
        await s.insertCampaign(campaign('fs-c', { devices: ['x', 'y', 'z'] }));
        const { devices: _d, ...rest } = campaign('fs-c');
        assert.deepEqual(await s.getCampaignState('fs-c'), { ...rest, groupSize: 3 });
        await s.updateCampaign('fs-c', { devices: ['x'], status: 'running' });
        assert.deepEqual(await s.getCampaignState('fs-c'), { ...rest, status: 'running', groupSize: 1 });
        assert.equal(await s.getCampaignState('fs-none'), undefined);
      });

      it('counts devices by status and online, and lists devices by hardware', async () => {
        const before = await s.countDevices();
        await s.insertDevice(device('fs-d1', { online: true }));
        await s.insertDevice(device('fs-d2', { status: 'pending' }));
        await s.insertDevice(device('fs-d3', { status: 'decommissioned', online: true }));
        const after = await s.countDevices();
        assert.equal(after.total - before.total, 3);
        assert.equal(after.online - before.online, 2);
        assert.deepEqual(Object.fromEntries(Object.entries(after.byStatus).map(([k, n]) => [k, n - before.byStatus[k as keyof typeof before.byStatus]])),
          { preregistered: 0, pending: 1, active: 1, decommissioned: 1 });
        await s.insertEcu({ ...ecu('fs-d1-x', 'fs-d1', true), hardwareId: 'fs-hw' });
        await s.insertEcu({ ...ecu('fs-d1-y', 'fs-d1', false), hardwareId: 'fs-hw2' });
        await s.insertEcu({ ...ecu('fs-d2-x', 'fs-d2', true), hardwareId: 'fs-hw' });
        assert.deepEqual((await s.devicesWithHardware('active', ['fs-hw', 'fs-hw2'])).map((d) => d.id), ['fs-d1'], 'each device once');
        assert.deepEqual((await s.devicesWithHardware('pending', ['fs-hw'])).map((d) => d.id), ['fs-d2']);
        assert.deepEqual(await s.devicesWithHardware('active', []), []);
      });

      it('counts ECUs by hardware ID and installed image, leaving decommissioned devices out', async () => {
        const installed = (filename: string) => ({ filename, length: 1, hashes: { sha256: 'ab'.repeat(32) } });
        await s.insertEcu({ ...ecu('fs-d3-x', 'fs-d3', true), hardwareId: 'fs-hw' });
        await s.updateEcu('fs-d1-x', { installed: installed('v2.bin'), releaseCounter: 2 });
        await s.updateEcu('fs-d2-x', { installed: installed('v2.bin'), releaseCounter: 2 });
        const versions = (await s.ecuVersions()).filter((v) => v.hardwareId.startsWith('fs-'));
        assert.deepEqual(versions, [
          { hardwareId: 'fs-hw', image: 'v2.bin', releaseCounter: 2, ecus: 2 },
          { hardwareId: 'fs-hw2', image: null, releaseCounter: 0, ecus: 1 },
        ]);
      });

      it('lists the newest failures and security events of devices not decommissioned', async () => {
        const late = (n: number) => `2099-01-01T00:00:0${n}.000Z`;
        await s.insertAssignment(assignment('fs-f1', 'fs-d1', { status: 'failed', updatedAt: late(1) }));
        await s.insertAssignment(assignment('fs-f2', 'fs-d3', { status: 'failed', updatedAt: late(3) }));
        await s.insertAssignment(assignment('fs-f3', 'fs-d2', { status: 'failed', updatedAt: late(2) }));
        assert.deepEqual((await s.recentFailures(2)).map((a) => a.id), ['fs-f3', 'fs-f1']);
        await s.insertEvent({ deviceId: 'fs-d1', ecuSerial: null, kind: 'attack', code: 'X', detail: 'one', at: late(1) });
        await s.insertEvent({ deviceId: 'fs-d3', ecuSerial: null, kind: 'attack', code: 'X', detail: 'gone', at: late(3) });
        await s.insertEvent({ deviceId: 'fs-d2', ecuSerial: null, kind: 'attack', code: 'X', detail: 'two', at: late(2) });
        assert.deepEqual((await s.recentEvents(2)).map((e) => e.detail), ['two', 'one']);
      });

      it('names the devices, assignments and campaigns written since a cursor, committed ones only', async () => {
        const start = await s.changesSince(undefined);
        assert.deepEqual(start.changes, [], 'without a cursor: only the cursor');
        await s.insertDevice(device('fs-ch1'));
        await s.updateDevice('fs-d1', { online: false });
        await s.updateAssignment('fs-f1', { progress: {} });
        await s.updateCampaign('fs-c', { reason: 'r' });
        await s.updateEcu('fs-d1-x', { releaseCounter: 3 }); // not a watched table
        const other = await t.openAnother();
        let release!: () => void;
        let written!: () => void;
        const wrote = new Promise<void>((r) => (written = r));
        const open = other.transaction(async () => {
          await other.insertDevice(device('fs-uncommitted'));
          written();
          await new Promise<void>((r) => (release = r));
        });
        try {
          await wrote;
          const first = await s.changesSince(start.cursor);
          const named = (b: typeof first, kind: string) => new Set(b.changes.filter((c) => c.kind === kind).map((c) => c.id));
          for (const id of ['fs-ch1', 'fs-d1']) assert.ok(named(first, 'devices').has(id), id);
          assert.ok(named(first, 'assignments').has('fs-f1'));
          assert.ok(named(first, 'campaigns').has('fs-c'));
          assert.ok(!named(first, 'devices').has('fs-uncommitted'), 'not before its commit');
          release();
          await open;
          const second = await s.changesSince(first.cursor);
          assert.ok(named(second, 'devices').has('fs-uncommitted'), 'read once committed, although written before the previous read');
          const third = await s.changesSince(second.cursor);
          const stamps = new Set(second.changes.map((c) => `${c.kind}:${c.id}:${c.stamp}`));
          for (const c of third.changes) assert.ok(stamps.has(`${c.kind}:${c.id}:${c.stamp}`), `nothing new is named: ${JSON.stringify(c)}`);
        } finally {
          release?.();
          await open.catch(() => {});
          await other.close();
        }
      });

      it('holds a device\'s ID under lockDevice before its row exists: two registrations take turns', async () => {
        const other = await t.openAnother();
        try {
          const register = (store: DirectorStore) => store.transaction(async () => {
            await store.lockDevice('fs-race');
            if (await store.getDevice('fs-race')) return false;
            await new Promise((r) => setTimeout(r, 20)); // let the other in, if it can
            await store.insertDevice(device('fs-race'));
            return true;
          });
          const created = await Promise.all([register(s), register(other)]);
          assert.deepEqual(created.sort(), [false, true]);
        } finally {
          await other.close();
        }
      });

      it('runs a transaction again after it lost a race on a unique key, so it sees the winner\'s row', async () => {
        const other = await t.openAnother();
        try {
          await s.insertDevice(device('fs-ecu-a'));
          await s.insertDevice(device('fs-ecu-b'));
          const claim = (store: DirectorStore, owner: string) => store.transaction(async () => {
            await store.lockDevice(owner);
            if (await store.getEcu('fs-shared-serial')) return 'taken';
            await new Promise((r) => setTimeout(r, 20)); // let the other in, if it can
            await store.insertEcu(ecu('fs-shared-serial', owner, true));
            return 'claimed';
          });
          const outcomes = await Promise.all([claim(s, 'fs-ecu-a'), claim(other, 'fs-ecu-b')]);
          assert.deepEqual(outcomes.sort(), ['claimed', 'taken']);
        } finally {
          await other.close();
        }
      });
    });
  });
}
