/**
 * Carries out the transition table's effects. For each event it computes the
 * next state (pure), PERSISTS it (together with whatever the step asked to
 * commit atomically with it), and only then runs the next step.
 *
 * Invariants:
 * - A state is on disk before any of its step's effects happen.
 * - A start that finds a non-idle state resumes it as ON_POWER_LOSS says;
 *   after MAX_RESUMES starts in one state without progress (the state's
 *   progress fact, measured at each start, did not grow) it takes the failure
 *   edge instead. The count and the last measure live in the machine row and
 *   are reset by every saved transition.
 * - One cycle takes at most loopLimit() transitions (StateLoopError).
 * - Once the cycle's `abandon` signal aborts, nothing more is persisted: the
 *   step in flight ends (its caller cuts its I/O short), and runCycle rejects
 *   with CycleAbandonedError instead of saving what the step found, so the
 *   store holds what a power loss during that step would leave.
 * - Test hook: with UPFLEET_TEST_CRASH_AT=<state> (honoured only when
 *   NODE_ENV=test or UPFLEET_ENABLE_TEST_HOOKS=1) the process SIGKILLs itself
 *   right after persisting that state, before its step runs.
 */
import type { Db } from '../db.ts';
import { CycleAbandonedError, StateLoopError } from '../errors.ts';
import type { Event } from './events.ts';
import { IDLE, type State, type StateName } from './states.ts';
import { InterruptedError, loopLimit, MAX_RESUMES, ON_POWER_LOSS, transition, type Effect, type ProgressFact } from './transitions.ts';

/** What a step returns: the event it found, and writes to commit in the same transaction as the next state. */
export interface StepResult {
  event: Event;
  commit?: () => void;
}

export type Step = (state: State) => Promise<StepResult>;
export type Steps = Readonly<Record<Exclude<StateName, 'idle'>, Step>>;

export type CycleResult = Extract<Effect, { kind: 'cycleDone' }>['result'];

/** Reads a progress fact from what is persisted (image cache, recorded ECU offsets) for the stopped state. */
export type MeasureProgress = (fact: ProgressFact, state: State) => number;

export interface RunnerHooks {
  onTransition?(from: State, event: Event, to: State): void;
  /** The state name at which to SIGKILL the process (test hook; see the module header). */
  crashAt?: string;
}

/** Reads the crash hook from the environment, only in test mode. */
export function crashHookFromEnv(env: NodeJS.ProcessEnv): string | undefined {
  const enabled = env.NODE_ENV === 'test' || env.UPFLEET_ENABLE_TEST_HOOKS === '1';
  return enabled && env.UPFLEET_TEST_CRASH_AT ? env.UPFLEET_TEST_CRASH_AT : undefined;
}

export class StateStore {
  #load;
  #save;
  #setResumes;

  constructor(private readonly db: Db) {
    this.#load = db.prepare<[], { state: string; resumes: number; progress: number | null }>('SELECT state, resumes, progress FROM machine WHERE id = 1');
    this.#save = db.prepare<[string, string]>(
      `INSERT INTO machine (id, state, resumes, progress, updated_at) VALUES (1, ?, 0, NULL, ?)
       ON CONFLICT(id) DO UPDATE SET state = excluded.state, resumes = 0, progress = NULL, updated_at = excluded.updated_at`,
    );
    this.#setResumes = db.prepare<[number, number | null]>('UPDATE machine SET resumes = ?, progress = ? WHERE id = 1');
  }

  load(): { state: State; resumes: number; progress: number | null } {
    const row = this.#load.get();
    return row === undefined ? { state: IDLE, resumes: 0, progress: null } : { state: JSON.parse(row.state) as State, resumes: row.resumes, progress: row.progress };
  }

  /** Persists `state` and runs `commit` in one transaction; a new state starts with no resumes counted. */
  save(state: State, commit?: () => void): void {
    this.db.transaction(() => {
      commit?.();
      this.#save.run(JSON.stringify(state), new Date().toISOString());
    })();
  }

  /**
   * Counts a start in the stored state and returns the starts without progress
   * so far (this one included). `measured` is the state's progress fact now
   * (null: the state has none): above the highest mark of earlier starts in
   * this state, the interrupted run got further, and the count starts again.
   */
  countResume(measured: number | null): number {
    return this.db.transaction(() => {
      const { resumes, progress } = this.load();
      const further = measured !== null && (progress === null || measured > progress);
      const count = further ? 1 : resumes + 1;
      // The mark is the highest measure seen: a fact that fell back and grew again is not progress until it passes it.
      this.#setResumes.run(count, further ? measured : progress);
      return count;
    })();
  }
}

export class Runner {
  readonly #store: StateStore;
  readonly #steps: Steps;
  readonly #hooks: RunnerHooks;
  readonly #ecuCount: number;
  readonly #measure: MeasureProgress;

  constructor(options: { store: StateStore; steps: Steps; ecuCount: number; measure: MeasureProgress; hooks?: RunnerHooks }) {
    this.#store = options.store;
    this.#measure = options.measure;
    this.#steps = options.steps;
    this.#ecuCount = options.ecuCount;
    this.#hooks = options.hooks ?? {};
  }

  get state(): State {
    return this.#store.load().state;
  }

  /**
   * Runs one cycle to idle: resumes an interrupted cycle, or starts one with `wake`.
   * @throws TransitionError, StateLoopError (bugs); CycleAbandonedError once `abandon`
   *   aborts; step failures become `failed` events.
   */
  async runCycle(cycleId: string, abandon?: AbortSignal): Promise<CycleResult> {
    let { state } = this.#store.load();
    if (abandon?.aborted) throw new CycleAbandonedError(state.name);
    let pending: StepResult;
    if (state.name === 'idle') {
      pending = { event: { type: 'wake', cycleId } };
    } else {
      const rule = ON_POWER_LOSS[state.name];
      const resumes = this.#store.countResume(rule.progress === null ? null : this.#measure(rule.progress, state));
      const action = resumes > MAX_RESUMES ? 'rollback' : rule.action;
      pending = action === 'rollback'
        ? { event: { type: 'failed', error: new InterruptedError(state.name, resumes) } }
        : await this.#runStep(state);
    }
    const limit = loopLimit(this.#ecuCount);
    const trace: string[] = [state.name];
    for (;;) {
      // Abandoned, the step most likely failed because its I/O was cut: that is not its result.
      if (abandon?.aborted) throw new CycleAbandonedError(state.name);
      const { next, effects } = transition(state, pending.event);
      this.#store.save(next, pending.commit);
      this.#hooks.onTransition?.(state, pending.event, next);
      trace.push(next.name);
      if (trace.length > limit) throw new StateLoopError(limit, trace);
      if (this.#hooks.crashAt === next.name) process.kill(process.pid, 'SIGKILL');
      state = next;
      const done = effects.find((e) => e.kind === 'cycleDone');
      if (done) return done.result;
      pending = await this.#runStep(state);
    }
  }

  async #runStep(state: State): Promise<StepResult> {
    if (state.name === 'idle') throw new Error('idle has no step');
    try {
      return await this.#steps[state.name](state);
    } catch (error) {
      const err = error instanceof Error ? error : new Error(String(error));
      const ecuSerial = (err as { ecuSerial?: unknown }).ecuSerial;
      return { event: { type: 'failed', error: err, ...(typeof ecuSerial === 'string' && { ecuSerial }) } };
    }
  }
}
