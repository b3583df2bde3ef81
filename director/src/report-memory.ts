/**
 * Which ECU version reports the director accepts, so that none is accepted twice
 * (Uptane 5.4.2.1.1: a report carries the primary's nonce for the cycle; the ECU
 * signs it with its own key and the time it signed it).
 *
 * Per ECU the director remembers the nonce of every report it accepted, with the
 * report's signed time. A report is refused when:
 * - its nonce is empty or remembered (STALE_NONCE);
 * - it was signed at or before `floor` (STALE_REPORT).
 * A nonce is forgotten only once its report left the window, or when more than
 * NONCE_LIMIT are remembered (the oldest goes); either way `floor` rises to that
 * report's time, so the time check refuses whatever the nonce check no longer
 * can. Every replay is refused: older than the floor, or a nonce on record.
 * Times are only compared with times the same ECU signed: an ECU's clock may be
 * far from the director's or the primary's (a vehicle's RTC drifts, a test moves
 * it a year), and such an ECU must still be able to report. An ECU whose clock
 * is set back is refused until it passes its floor again.
 * Pure functions: the caller reads and writes the memory in its transaction.
 */

/** How long a nonce is remembered, by the director's clock (then the floor guards it). */
export const REPORT_WINDOW_MS = 24 * 3600_000;
/** Nonces remembered per ECU at most (a device polling every few seconds stays bounded). */
export const NONCE_LIMIT = 64;

export interface ReportMemory {
  /** [nonce, report time in ms], in the order accepted. */
  seen: Array<[string, number]>;
  /** Reports signed at or before this time (ms since the epoch) are refused: their nonces may be forgotten. */
  floor: number;
}

export interface ReportRefusal {
  code: 'STALE_NONCE' | 'STALE_REPORT';
  message: string;
  fields: Record<string, unknown>;
}

/**
 * The stored memory of one ECU. Before reports were timed the director kept a
 * plain list of nonces: those count as seen now, so they are kept a whole window.
 */
export function readMemory(stored: unknown, nowMs: number): ReportMemory {
  if (Array.isArray(stored)) return { seen: stored.filter((n): n is string => typeof n === 'string').map((n) => [n, nowMs]), floor: 0 };
  if (typeof stored === 'object' && stored !== null && Array.isArray((stored as ReportMemory).seen)) return stored as ReportMemory;
  return { seen: [], floor: 0 };
}

/** Why the director refuses this report, or undefined when it is fresh. */
export function checkReport(memory: ReportMemory, report: { nonce: string; timestamp: string }): ReportRefusal | undefined {
  const { nonce } = report;
  if (nonce.length === 0 || memory.seen.some(([n]) => n === nonce)) {
    return { code: 'STALE_NONCE', message: `reused nonce ${JSON.stringify(nonce)}`, fields: { nonce } };
  }
  const t = Date.parse(report.timestamp);
  const earliest = memory.floor + 1;
  if (t < earliest) {
    return {
      code: 'STALE_REPORT', message: `report signed at ${report.timestamp}, before ${new Date(earliest).toISOString()}`,
      fields: { nonce, timestamp: report.timestamp, earliest: new Date(earliest).toISOString() },
    };
  }
  return undefined;
}

/** The memory after accepting a report (check it first with checkReport). */
export function rememberReport(memory: ReportMemory, report: { nonce: string; timestamp: string }, nowMs: number): ReportMemory {
  let floor = memory.floor;
  const kept: Array<[string, number]> = [];
  for (const entry of memory.seen) {
    if (entry[1] < nowMs - REPORT_WINDOW_MS) floor = Math.max(floor, entry[1]);
    else kept.push(entry);
  }
  kept.push([report.nonce, Date.parse(report.timestamp)]);
  while (kept.length > NONCE_LIMIT) {
    let oldest = 0;
    for (let i = 1; i < kept.length; i++) if (kept[i]![1] < kept[oldest]![1]) oldest = i;
    floor = Math.max(floor, kept[oldest]![1]);
    kept.splice(oldest, 1);
  }
  return { seen: kept, floor };
}
