/**
 * The persisted facts that show an update step got further (transitions.ts
 * ProgressFact): the runner measures the stopped state's fact at each start
 * after a power loss, and counts the start against MAX_RESUMES only when the
 * fact did not grow.
 *
 * Invariants:
 * - 'imageBytesHeld' is read from the image cache itself (verified images and
 *   partial files): nothing else records it.
 * - 'ecuBytesHeld' is what the ECUs acknowledged holding during installing
 *   (a serial ECU's cumulative ack, the primary's staged bytes, the whole image
 *   once installed), recorded in the key/value store by cycle. The record lags
 *   the ECU by at most RECORD_EVERY_MS and never runs ahead of it, so it shows
 *   progress only where the ECU really holds more.
 */
import type { KeyValue } from './db.ts';
import type { ImageCache } from './image-cache.ts';
import type { State } from './machine/states.ts';
import type { ProgressFact } from './machine/transitions.ts';

const KEY = 'installProgress';
/** Least time between two writes of a growing transfer offset (each write is an fsync). */
export const RECORD_EVERY_MS = 250;

interface EcuBytes {
  cycleId: string;
  held: Record<string, number>;
}

export class ProgressFacts {
  constructor(
    private readonly images: ImageCache,
    private readonly kv: KeyValue,
  ) {}

  /** The fact's value now, for the cycle of `state`. */
  measure(fact: ProgressFact, state: State): number {
    const plan = state.cycle.plan;
    switch (fact) {
      case 'imageBytesHeld':
        return this.images.heldBytes(plan);
      case 'ecuBytesHeld': {
        const record = this.kv.get<EcuBytes>(KEY);
        if (record?.cycleId !== state.cycle.cycleId) return 0;
        const held = new Map(Object.entries(record.held));
        return plan.reduce((sum, p) => sum + Math.min(held.get(p.ecuSerial) ?? 0, p.length), 0);
      }
    }
  }

  /**
   * A recorder for one run of the installing step: `record(ecuSerial, held, final)`
   * stores what an ECU acknowledged holding when it grew, at once for the first
   * report of each ECU in this run (its resume offset) and for `final` reports
   * (the image verified or installed), else at most every RECORD_EVERY_MS.
   */
  ecuBytesRecorder(cycleId: string, clock: () => number = Date.now): (ecuSerial: string, held: number, final: boolean) => void {
    const stored = this.kv.get<EcuBytes>(KEY);
    const held = new Map(stored?.cycleId === cycleId ? Object.entries(stored.held) : []);
    const reported = new Set<string>();
    let lastWrite = -Infinity;
    return (ecuSerial, bytes, final) => {
      const first = !reported.has(ecuSerial);
      reported.add(ecuSerial);
      if (bytes <= (held.get(ecuSerial) ?? 0)) return;
      held.set(ecuSerial, bytes);
      if (!first && !final && clock() - lastWrite < RECORD_EVERY_MS) return;
      lastWrite = clock();
      this.kv.set(KEY, { cycleId, held: Object.fromEntries(held) } satisfies EcuBytes);
    };
  }
}
