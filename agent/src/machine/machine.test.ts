import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadError, LengthOrHashMismatchError } from '@upfleet/core';
import { openDb } from '../db.ts';
import { StateLoopError, TransitionError } from '../errors.ts';
import type { Event } from './events.ts';
import { Runner, StateStore, type MeasureProgress, type Steps, type StepResult } from './runner.ts';
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

/** A runner whose progress facts never grow, unless the test passes a measure. */
function machineRunner(store: StateStore, s: Steps, measure: MeasureProgress = () => 0): Runner {
  return new Runner({ store, steps: s, ecuCount: 1, measure });
}

/** Lets a runner reach its hanging step (the "power loss"). */
const settle = () => new Promise((r) => setImmediate(r));

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
      const runner = machineRunner(store, steps(c.faults, visited));
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
        void machineRunner(store, steps({ powerLossIn: name }, first)).runCycle('c1');
        await new Promise((r) => setImmediate(r));
        assert.equal(store.load().state.name, name, 'state persisted before its step');
        const second: StateName[] = [];
        const result = await machineRunner(store, steps({}, second)).runCycle('c2');
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
      void machineRunner(store, steps({ failIn: { state: 'installing', error: new DownloadError('x') }, powerLossIn: 'rollingBack' }, [])).runCycle('c1');
      await new Promise((r) => setImmediate(r));
      assert.equal(store.load().state.name, 'rollingBack');
      const second: StateName[] = [];
      assert.equal(await machineRunner(store, steps({}, second)).runCycle('c2'), 'failure');
      assert.deepEqual(second, ['rollingBack', 'reporting']);
    });

    /** The steps a failure in `state` leads through (the table's `failed` edges). */
    const failureEdge = (state: StateName): StateName[] => {
      const out: StateName[] = [];
      for (let s = state; ; ) {
        const to = TABLE.find(([f, e]) => f === s && e === 'failed')?.[2];
        if (to === undefined || to === 'idle') return out;
        out.push(to);
        s = to === 'rollingBack' ? 'rollingBack' : to;
        if (to === 'reporting') return out;
      }
    };

    /** Starts `runs` runs that each lose power in `state`, the fact growing by `growth` per run; then one that may finish. */
    async function interrupted(state: StateName, runs: number, growth: number) {
      const db = tempDb();
      const store = new StateStore(db);
      let fact = 0;
      const measured: number[] = [];
      const measure: MeasureProgress = (f, s) => {
        assert.equal(f, ON_POWER_LOSS[s.name].progress, 'the fact is the one the table names for the stopped state');
        measured.push(fact);
        return fact;
      };
      void machineRunner(store, steps({ powerLossIn: state }, []), measure).runCycle('c1');
      await settle();
      for (let i = 0; i < runs - 1; i++) {
        fact += growth;
        void machineRunner(store, steps({ powerLossIn: state }, []), measure).runCycle('c1');
        await settle();
      }
      fact += growth;
      const visited: StateName[] = [];
      const result = await machineRunner(store, steps({}, visited), measure).runCycle('c2');
      return { result, visited, failure: store.load().state.cycle.failure, measured, close: () => db.close() };
    }

    for (const state of STATE_NAMES.filter((n) => ON_POWER_LOSS[n].progress !== null)) {
      const fact = ON_POWER_LOSS[state].progress;
      it(`finishes after ${3 * MAX_RESUMES} power losses in ${state} when ${fact} grew in each run`, async () => {
        const r = await interrupted(state, 3 * MAX_RESUMES, 1000);
        assert.equal(r.result, 'success');
        assert.equal(r.visited[0], state, 'the step ran again');
        assert.equal(r.failure, undefined);
        assert.equal(r.measured.length, 3 * MAX_RESUMES, 'measured at every start');
        r.close();
      });

      it(`takes the failure edge after ${MAX_RESUMES} starts in ${state} in a row where ${fact} did not grow`, async () => {
        const r = await interrupted(state, MAX_RESUMES + 1, 0);
        assert.equal(r.result, 'failure');
        assert.deepEqual(r.visited, failureEdge(state), 'no step of the state ran again');
        assert.equal(r.failure?.code, 'INTERRUPTED');
        assert.deepEqual(r.failure?.fields, { state, resumes: MAX_RESUMES + 1 });
        r.close();
      });
    }

    it('counts again from the first start without progress: a crash loop after progress still ends', async () => {
      const db = tempDb();
      const store = new StateStore(db);
      let fact = 0;
      const loseAt = async () => {
        void machineRunner(store, steps({ powerLossIn: 'downloading' }, []), () => fact).runCycle('c1');
        await settle();
      };
      await loseAt();
      // Two runs that got further, then the step stops getting anywhere.
      for (const growth of [500, 500, 0, 0]) {
        fact += growth;
        await loseAt();
      }
      assert.equal(store.load().resumes, 3, 'the starts since the last progress (the first of them counts too)');
      assert.equal(store.load().progress, 1000);
      const visited: StateName[] = [];
      assert.equal(await machineRunner(store, steps({}, visited), () => fact).runCycle('c2'), 'failure');
      assert.deepEqual(visited, ['reporting']);
      assert.equal(store.load().state.cycle.failure?.code, 'INTERRUPTED');
      db.close();
    });

    it('does not count a fact that fell back and grew again to its old mark as progress', async () => {
      const db = tempDb();
      const store = new StateStore(db);
      void machineRunner(store, steps({ powerLossIn: 'installing' }, [])).runCycle('c1');
      await settle();
      // The fact at each later start: progress to 800, then down and back up to it, never past.
      for (const fact of [800, 100, 800]) {
        void machineRunner(store, steps({ powerLossIn: 'installing' }, []), () => fact).runCycle('c1');
        await settle();
      }
      assert.equal(store.load().resumes, 3, '0 -> 800 started the count again; 100 and 800 again did not');
      assert.equal(store.load().progress, 800);
      const visited: StateName[] = [];
      assert.equal(await machineRunner(store, steps({}, visited), () => 800).runCycle('c2'), 'failure');
      assert.deepEqual(visited, ['rollingBack', 'reporting']);
      assert.equal(store.load().state.cycle.failure?.code, 'INTERRUPTED');
      db.close();
    });

    it(`counts every start in a state without a progress fact (checkingImages), and never measures`, async () => {
      const db = tempDb();
      const store = new StateStore(db);
      const measure: MeasureProgress = () => assert.fail('checkingImages has no progress fact');
      for (let i = 0; i <= MAX_RESUMES; i++) {
        void machineRunner(store, steps({ powerLossIn: 'checkingImages' }, []), measure).runCycle('c1');
        await settle();
      }
      const visited: StateName[] = [];
      assert.equal(await machineRunner(store, steps({}, visited), measure).runCycle('c2'), 'failure');
      assert.deepEqual(visited, ['reporting']);
      assert.equal(store.load().state.cycle.failure?.code, 'INTERRUPTED');
      db.close();
    });

    it(`a transition resets the count: ${MAX_RESUMES + 2} power losses in activating, each after one more ECU activated`, async () => {
      const db = tempDb();
      const store = new StateStore(db);
      const plan = Array.from({ length: MAX_RESUMES + 2 }, (_, i) => ({ ...PLAN[0]!, ecuSerial: `ecu-${i}` }));
      /** Steps for one run: activating activates one ECU, then the power goes (until `last`). */
      const run = (last: boolean): Steps => {
        let activatedThisRun = false;
        return {
          ...steps({}, []),
          checkingDirector: async () => ({ event: { type: 'directorUpdated', directorTargetsVersion: 4, plan } }),
          checkingImages: async () => ({ event: { type: 'targetsMatched', plan } }),
          activating: async (state: State): Promise<StepResult> => {
            if (activatedThisRun && !last) return new Promise<StepResult>(() => {});
            const next = plan.find((p) => !state.cycle.activated.includes(p.ecuSerial));
            if (!next) return { event: { type: 'activated' } };
            activatedThisRun = true;
            return { event: { type: 'ecuActivated', ecuSerial: next.ecuSerial } };
          },
        };
      };
      for (let i = 0; i < plan.length; i++) {
        void machineRunner(store, run(false)).runCycle('c1');
        await settle();
        assert.equal(store.load().state.cycle.activated.length, i + 1);
        assert.equal(store.load().resumes, 0, 'ecuActivated saved a new state');
      }
      assert.equal(await machineRunner(store, run(true)).runCycle('c2'), 'success');
      assert.equal(store.load().state.cycle.failure, undefined);
      db.close();
    });
  });

  it('stops a state loop', async () => {
    const db = tempDb();
    const store = new StateStore(db);
    const s = steps({}, []);
    const looping = { ...s, activating: async (): Promise<StepResult> => ({ event: { type: 'ecuActivated', ecuSerial: 'again' } }) };
    await assert.rejects(machineRunner(store, looping).runCycle('c'), StateLoopError);
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
    await machineRunner(store, withCommit).runCycle('c');
    assert.deepEqual(db.prepare('SELECT state FROM marks').all(), [{ state: 'queued' }]);
  });
});
