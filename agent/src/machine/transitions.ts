/**
 * The update cycle as one table, read top to bottom (STYLE.md section 6):
 * manifest -> director -> image repository -> download -> install -> activate
 * -> report, with failures falling to rollback or straight to the report.
 *
 * Invariants:
 * - `transition` is pure: (state, event) -> { next, effects }. No I/O, no clock.
 * - A pair missing from the table is a bug and throws TransitionError naming both.
 * - What a start after power loss does in each state is data (`ON_POWER_LOSS`)
 *   next to the table, not a second hand-kept list in the runner.
 */
import { RepositoryError, UpfleetError } from '@upfleet/core';
import { TransitionError } from '../errors.ts';
import type { Event, EventType } from './events.ts';
import type { FailureRecord, State, StateName } from './states.ts';

// prettier-ignore
export const TABLE: ReadonlyArray<readonly [StateName, EventType, StateName]> = [
  // from                event               to
  ['idle',              'wake',             'sendingManifest'],
  ['sendingManifest',   'manifestQueued',   'checkingDirector'],
  ['sendingManifest',   'failed',           'idle'],
  ['checkingDirector',  'noUpdate',         'idle'],
  ['checkingDirector',  'directorUpdated',  'checkingImages'],
  ['checkingDirector',  'failed',           'reporting'],
  ['checkingImages',    'targetsMatched',   'downloading'],
  ['checkingImages',    'failed',           'reporting'],
  ['downloading',       'imagesDownloaded', 'installing'],
  ['downloading',       'failed',           'reporting'],
  ['installing',        'imagesInstalled',  'activating'],
  ['installing',        'failed',           'rollingBack'],
  ['activating',        'ecuActivated',     'activating'],
  ['activating',        'activated',        'reporting'],
  ['activating',        'failed',           'rollingBack'],
  ['rollingBack',       'rolledBack',       'reporting'],
  ['rollingBack',       'failed',           'reporting'],
  ['reporting',         'reported',         'idle'],
];

/**
 * A persisted fact that grows while a step gets further, measured at each start
 * after a power loss (the runner's owner reads it; bigger means further):
 * - 'imageBytesHeld': bytes of the plan's images in the image cache, verified
 *   or partial (a download resumes after them with Range);
 * - 'ecuBytesHeld': bytes each ECU of the plan acknowledged holding (its resume
 *   offset; a whole image once the ECU installed it), as the installing step
 *   recorded them while it ran.
 */
export type ProgressFact = 'imageBytesHeld' | 'ecuBytesHeld';

/**
 * What the next start does when it finds the machine stopped in a state:
 * - action 'none': nothing to resume;
 * - action 'redo': run the state's step again; every step is idempotent
 *   (downloads resume with Range, secondaries resume transfers from their own
 *   offset, activation skips ECUs already recorded as activated);
 * - action 'rollback': feed `failed` with an InterruptedError, so the table's
 *   failure edge decides (used where redoing could act on a half-known outcome).
 * - progress: the fact that shows the interrupted run got further. A start
 *   after a run that made progress is not counted against MAX_RESUMES, so an
 *   update finishes under repeated power loss; a state without a fact counts
 *   every start. Any transition resets the count (activating's progress is its
 *   own transition, `ecuActivated`).
 * After MAX_RESUMES starts in the same state without progress (a crash loop),
 * every state takes the 'rollback' path.
 */
export interface PowerLossRule {
  action: 'none' | 'redo' | 'rollback';
  progress: ProgressFact | null;
}

// prettier-ignore
export const ON_POWER_LOSS: Readonly<Record<StateName, PowerLossRule>> = {
  idle:             { action: 'none', progress: null },
  sendingManifest:  { action: 'redo', progress: null },
  checkingDirector: { action: 'redo', progress: null },
  checkingImages:   { action: 'redo', progress: null },
  downloading:      { action: 'redo', progress: 'imageBytesHeld' },
  installing:       { action: 'redo', progress: 'ecuBytesHeld' },
  activating:       { action: 'redo', progress: null },
  rollingBack:      { action: 'redo', progress: null },
  reporting:        { action: 'redo', progress: null },
};

/** Starts in one state without progress after which the runner takes the failure edge. */
export const MAX_RESUMES = 3;

/** Transitions in one cycle beyond which the runner declares a loop. */
export function loopLimit(ecuCount: number): number {
  return TABLE.length + 2 * ecuCount;
}

/** The machine stopped in a state (power loss) more than MAX_RESUMES times in a row without progress. */
export class InterruptedError extends UpfleetError {
  override name = 'InterruptedError';
  override readonly code = 'INTERRUPTED';
  constructor(readonly state: StateName, readonly resumes: number) {
    super(`interrupted in ${state} ${resumes} time(s) without progress`);
  }
}

export type Effect =
  /** Run the step of the state just entered. */
  | { kind: 'enter'; state: StateName }
  /** The cycle is over. */
  | { kind: 'cycleDone'; result: 'noUpdate' | 'success' | 'failure' | 'aborted' };

const INDEX = new Map(TABLE.map(([from, ev, to]) => [`${from}/${ev}`, to]));

function fieldsOf(error: Error): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(error)) {
    // ecuSerial is recorded beside the fields (the runner tags errors with it).
    if (k === 'name' || k === 'code' || k === 'cause' || k === 'ecuSerial') continue;
    if (v instanceof Date) out[k] = v.toISOString();
    else if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) out[k] = v;
  }
  return out;
}

/** ECU refusal codes (core/link ERROR_CODES) that mean the ECU refused data as not verified. */
const ECU_VERIFICATION_CODES = new Set([
  'METADATA_MALFORMED', 'METADATA_UNSIGNED', 'METADATA_EXPIRED', 'METADATA_ROLLBACK', 'METADATA_INCOMPLETE',
  'NO_TARGET_FOR_ECU', 'HARDWARE_ID_MISMATCH', 'TARGET_MISMATCH', 'IMAGE_MISMATCH', 'LENGTH_MISMATCH', 'HASH_MISMATCH',
]);

/** A refusal of remote data; an ECU's refusal counts only when it is about verification (not BUSY, LOW_BATTERY...). */
function isAttack(error: Error): boolean {
  const ecuCode = (error as { ecuCode?: unknown }).ecuCode;
  if (typeof ecuCode === 'string') return ECU_VERIFICATION_CODES.has(ecuCode);
  return error instanceof RepositoryError;
}

export function failureRecord(error: Error, state: StateName, ecuSerial?: string): FailureRecord {
  return {
    name: error.name,
    code: error instanceof UpfleetError ? error.code : 'INTERNAL',
    message: error.message,
    state,
    ...(ecuSerial !== undefined && { ecuSerial }),
    attack: isAttack(error),
    fields: fieldsOf(error),
  };
}

/**
 * The pure transition function.
 * @throws TransitionError for a pair the table does not have.
 */
export function transition(state: State, event: Event): { next: State; effects: Effect[] } {
  const to = INDEX.get(`${state.name}/${event.type}`);
  if (to === undefined) throw new TransitionError(state.name, event.type);
  let cycle = state.cycle;
  switch (event.type) {
    case 'wake':
      cycle = { cycleId: event.cycleId, directorTargetsVersion: 0, plan: [], activated: [] };
      break;
    case 'directorUpdated':
      cycle = { ...cycle, directorTargetsVersion: event.directorTargetsVersion, plan: event.plan };
      break;
    case 'targetsMatched':
      cycle = { ...cycle, plan: event.plan };
      break;
    case 'ecuActivated':
      cycle = { ...cycle, activated: [...cycle.activated, event.ecuSerial] };
      break;
    case 'failed':
      // A failure while rolling back keeps the original cause: that is what the report is about.
      if (cycle.failure === undefined) cycle = { ...cycle, failure: failureRecord(event.error, state.name, event.ecuSerial) };
      break;
  }
  const next: State = { name: to, cycle };
  if (to !== 'idle') return { next, effects: [{ kind: 'enter', state: to }] };
  const result =
    event.type === 'noUpdate' ? 'noUpdate' : event.type === 'failed' ? 'aborted' : cycle.failure ? 'failure' : 'success';
  return { next, effects: [{ kind: 'cycleDone', result }] };
}
