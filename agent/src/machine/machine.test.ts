import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadError, LengthOrHashMismatchError } from '@upfleet/core';
import { openDb } from '../db.ts';
import { StateLoopError, TransitionError } from '../errors.ts';
import type { Event } from './events.ts';
import { Runner, StateStore, type Steps, type StepResult } from './runner.ts';
import { IDLE, STATE_NAMES, type State, type StateName } from './states.ts';
import { MAX_RESUMES, ON_POWER_LOSS, TABLE, transition } from './transitions.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDb() {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-machine-'));
  dirs.push(dir);
  return openDb(dir);
}

const PLAN = [{ ecuSerial: 'ecu-1', hardwareId: 'hw', name: 'fw.bin', length: 3, hashes: { sha256: 'ab' }, releaseCounter: 1 }];

/** The happy-path event each step returns unless a fault is injected. */
const HAPPY: Record<Exclude<StateName, 'idle'>, Event> = {
  sendingManifest: { type: 'manifestQueued' },
  checkingDirector: { type: 'directorUpdated', directorTargetsVersion: 4, plan: PLAN },
  checkingImages: { type: 'targetsMatched', plan: PLAN },
  downloading: { type: 'imagesDownloaded' },
  installing: { type: 'imagesInstalled' },
  activating: { type: 'activated' },
  rollingBack: { type: 'rolledBack' },
  reporting: { type: 'reported' },
};

interface Faults {
  failIn?: { state: StateName; error: Error };
  /** The step never returns: the process "loses power" with this state persisted. */
  powerLossIn?: StateName;
  noUpdate?: boolean;
}

function steps(faults: Faults, visited: StateName[]): Steps {
  const make = (name: Exclude<StateName, 'idle'>) => async (): Promise<StepResult> => {
    visited.push(name);
    if (faults.powerLossIn === name) return new Promise<StepResult>(() => {});
    if (faults.failIn?.state === name) throw faults.failIn.error;
    if (name === 'checkingDirector' && faults.noUpdate) return { event: { type: 'noUpdate' } };
    return { event: HAPPY[name] };
  };
  return Object.fromEntries(STATE_NAMES.filter((n) => n !== 'idle').map((n) => [n, make(n as Exclude<StateName, 'idle'>)])) as unknown as Steps;
}

describe('failure records', () => {
  it('counts an ECU refusal as an attack only for verification codes', async () => {
    const { EcuRefusedError } = await import('@upfleet/core/link/errors.ts');
    const busy = transition({ name: 'installing', cycle: { ...IDLE.cycle, plan: PLAN } }, { type: 'failed', error: new EcuRefusedError('ecu-1', 'ImageBegin', 'LOW_BATTERY', '') });
    assert.equal(busy.next.cycle.failure?.attack, false);
    const bad = transition({ name: 'installing', cycle: { ...IDLE.cycle, plan: PLAN } }, { type: 'failed', error: new EcuRefusedError('ecu-1', 'MetadataEnd', 'METADATA_EXPIRED', '') });
    assert.equal(bad.next.cycle.failure?.attack, true);
    assert.equal(bad.next.cycle.failure?.fields.ecuCode, 'METADATA_EXPIRED');
  });
});

describe('transition table', () => {
  it('has one row per (from, event) pair', () => {
    const keys = TABLE.map(([f, e]) => `${f}/${e}`);
    assert.equal(new Set(keys).size, keys.length);
  });

  it('reaches every state from idle and has a resume action for each', () => {
    const reached = new Set<StateName>(['idle']);
    for (let i = 0; i < TABLE.length; i++) for (const [f, , t] of TABLE) if (reached.has(f)) reached.add(t);
    assert.deepEqual([...reached].sort(), [...STATE_NAMES].sort());
    for (const s of STATE_NAMES) assert.ok(ON_POWER_LOSS[s] !== undefined, s);
  });

  it('throws naming both the state and the event for an unknown pair', () => {
    assert.throws(() => transition(IDLE, { type: 'activated' }), (e: unknown) => {
      assert.ok(e instanceof TransitionError);
      assert.equal(e.state, 'idle');
      assert.equal(e.event, 'activated');
      return true;
    });
  });

  it('records a failure with the typed error fields and keeps the first cause', () => {
    const installing: State = { name: 'installing', cycle: { ...IDLE.cycle, cycleId: 'c', plan: PLAN } };
    const err = new LengthOrHashMismatchError('fw.bin', 'sha256', 'aa', 'bb');
    const { next } = transition(installing, { type: 'failed', error: err, ecuSerial: 'ecu-1' });
    assert.equal(next.name, 'rollingBack');
    assert.equal(next.cycle.failure?.code, 'LENGTH_OR_HASH_MISMATCH');
    assert.equal(next.cycle.failure?.attack, true);
    assert.equal(next.cycle.failure?.ecuSerial, 'ecu-1');
    assert.deepEqual(next.cycle.failure?.fields, { subject: 'fw.bin', field: 'sha256', expected: 'aa', actual: 'bb' });
    const { next: after2 } = transition(next, { type: 'failed', error: new DownloadError('later') });
    assert.equal(after2.name, 'reporting');
    assert.equal(after2.cycle.failure?.code, 'LENGTH_OR_HASH_MISMATCH');
  });
});

interface Case {
  name: string;
  faults: Faults;
  trace: StateName[];
  result: string;
  failureCode?: string;
}

const CASES: Case[] = [
  { name: 'nothing new', faults: { noUpdate: true }, trace: ['sendingManifest', 'checkingDirector'], result: 'noUpdate' },
  {
    name: 'full update',
    faults: {},
    trace: ['sendingManifest', 'checkingDirector', 'checkingImages', 'downloading', 'installing', 'activating', 'reporting'],
    result: 'success',
  },
  {
    name: 'refused image repository match',
    faults: { failIn: { state: 'checkingImages', error: new LengthOrHashMismatchError('fw.bin', 'length', 3, 4) } },
    trace: ['sendingManifest', 'checkingDirector', 'checkingImages', 'reporting'],
    result: 'failure',
    failureCode: 'LENGTH_OR_HASH_MISMATCH',
  },
  {
    name: 'install failure rolls back',
    faults: { failIn: { state: 'installing', error: new DownloadError('link lost') } },
    trace: ['sendingManifest', 'checkingDirector', 'checkingImages', 'downloading', 'installing', 'rollingBack', 'reporting'],
    result: 'failure',
    failureCode: 'DOWNLOAD',
  },
  {
    name: 'manifest failure aborts the cycle',
    faults: { failIn: { state: 'sendingManifest', error: new DownloadError('no ECU') } },
    trace: ['sendingManifest'],
    result: 'aborted',
    failureCode: 'DOWNLOAD',
  },
];

describe('Runner', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const db = tempDb();
      const visited: StateName[] = [];
      const store = new StateStore(db);
      const runner = new Runner({ store, steps: steps(c.faults, visited), ecuCount: 1 });
      assert.equal(await runner.runCycle('c1'), c.result);
      assert.deepEqual(visited, c.trace);
      assert.equal(store.load().state.name, 'idle');
      assert.equal(store.load().state.cycle.failure?.code, c.failureCode);
      db.close();
    });
  }

  describe('power loss in every persisted state', () => {
    for (const name of STATE_NAMES.filter((n) => n !== 'idle' && n !== 'rollingBack')) {
      it(`resumes from ${name}`, async () => {
        const db = tempDb();
        const store = new StateStore(db);
        const first: StateName[] = [];
        void new Runner({ store, steps: steps({ powerLossIn: name }, first), ecuCount: 1 }).runCycle('c1');
        await new Promise((r) => setImmediate(r));
        assert.equal(store.load().state.name, name, 'state persisted before its step');
        const second: StateName[] = [];
        const result = await new Runner({ store, steps: steps({}, second), ecuCount: 1 }).runCycle('c2');
        assert.equal(second[0], name, 'the interrupted step runs again');
        assert.equal(store.load().state.name, 'idle');
        assert.equal(store.load().state.cycle.cycleId, 'c1', 'the interrupted cycle completes, no new one starts');
        assert.ok(['success', 'failure'].includes(result));
        db.close();
      });
    }

    it('resumes rollingBack', async () => {
      const db = tempDb();
      const store = new StateStore(db);
      void new Runner({ store, steps: steps({ failIn: { state: 'installing', error: new DownloadError('x') }, powerLossIn: 'rollingBack' }, []), ecuCount: 1 }).runCycle('c1');
      await new Promise((r) => setImmediate(r));
      assert.equal(store.load().state.name, 'rollingBack');
      const second: StateName[] = [];
      assert.equal(await new Runner({ store, steps: steps({}, second), ecuCount: 1 }).runCycle('c2'), 'failure');
      assert.deepEqual(second, ['rollingBack', 'reporting']);
    });

    it(`takes the failure edge after ${MAX_RESUMES} interrupted starts in one state`, async () => {
      const db = tempDb();
      const store = new StateStore(db);
      void new Runner({ store, steps: steps({ powerLossIn: 'installing' }, []), ecuCount: 1 }).runCycle('c1');
      await new Promise((r) => setImmediate(r));
      for (let i = 0; i < MAX_RESUMES; i++) {
        void new Runner({ store, steps: steps({ powerLossIn: 'installing' }, []), ecuCount: 1 }).runCycle('c1');
        await new Promise((r) => setImmediate(r));
      }
      const visited: StateName[] = [];
      assert.equal(await new Runner({ store, steps: steps({}, visited), ecuCount: 1 }).runCycle('c2'), 'failure');
      assert.deepEqual(visited, ['rollingBack', 'reporting']);
      assert.equal(store.load().state.cycle.failure?.code, 'INTERRUPTED');
    });
  });

  it('stops a state loop', async () => {
    const db = tempDb();
    const store = new StateStore(db);
    const s = steps({}, []);
    const looping = { ...s, activating: async (): Promise<StepResult> => ({ event: { type: 'ecuActivated', ecuSerial: 'again' } }) };
    await assert.rejects(new Runner({ store, steps: looping, ecuCount: 1 }).runCycle('c'), StateLoopError);
  });

  it('commits a step write in the same transaction as the next state', async () => {
    const db = tempDb();
    const store = new StateStore(db);
    db.exec('CREATE TABLE marks (state TEXT)');
    const s = steps({ noUpdate: true }, []);
    const withCommit = {
      ...s,
      sendingManifest: async (): Promise<StepResult> => ({
        event: { type: 'manifestQueued' },
        commit: () => db.prepare('INSERT INTO marks VALUES (?)').run('queued'),
      }),
    };
    await new Runner({ store, steps: withCommit, ecuCount: 1 }).runCycle('c');
    assert.deepEqual(db.prepare('SELECT state FROM marks').all(), [{ state: 'queued' }]);
  });
});
