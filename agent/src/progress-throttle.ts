/**
 * How often the director hears of a transfer's progress. The local display sees
 * every event; the director gets, per ECU and phase, the first event, the last
 * (done = total), and in between at most one every `intervalMs`, so a slow
 * cellular link carries a bounded trickle of progress, not one message per chunk.
 *
 * Invariants:
 * - An event that repeats the last admitted `done` of its ECU and phase is
 *   dropped (the serial driver's verify and flash steps repeat done = total).
 * - Pure: the caller passes the time in.
 */
import type { ProgressEvent } from './cycle.ts';

export class ProgressThrottle {
  readonly #last = new Map<string, { at: number; done: number }>();

  constructor(readonly intervalMs: number) {}

  /** Whether this event goes to the director; records it when it does. */
  admit(p: ProgressEvent, nowMs: number): boolean {
    const key = progressKey(p);
    const last = this.#last.get(key);
    if (last) {
      if (last.done === p.done) return false;
      if (p.done < p.total && nowMs - last.at < this.intervalMs) return false;
    }
    this.#last.set(key, { at: nowMs, done: p.done });
    return true;
  }

  /** Forgets every ECU (a new cycle starts afresh). */
  reset(): void {
    this.#last.clear();
  }
}

/** One ECU's phase: the unit of rate limiting here and of coalescing in the outbox. */
export function progressKey(p: Pick<ProgressEvent, 'ecuSerial' | 'state'>): string {
  return `${p.ecuSerial}/${p.state}`;
}
