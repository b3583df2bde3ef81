import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkReport, NONCE_LIMIT, readMemory, rememberReport, REPORT_WINDOW_MS, type ReportMemory } from './report-memory.ts';

const T0 = Date.parse('2030-01-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const report = (nonce: string, ms: number) => ({ nonce, timestamp: iso(ms) });

/** Accepts reports n-0 .. n-(count-1), one a second from T0, checking each on the way. */
function accept(count: number, memory: ReportMemory = readMemory(undefined, T0)): ReportMemory {
  for (let i = 0; i < count; i++) {
    const r = report(`n-${i}`, T0 + i * 1000);
    assert.equal(checkReport(memory, r), undefined, `report ${i} is fresh`);
    memory = rememberReport(memory, r, T0 + i * 1000);
  }
  return memory;
}

describe('report memory', () => {
  it('refuses every earlier report once more than NONCE_LIMIT were accepted: by nonce, or below the floor', () => {
    const count = NONCE_LIMIT + 20;
    const memory = accept(count);
    const now = T0 + count * 1000;
    assert.equal(memory.seen.length, NONCE_LIMIT);
    for (let i = 0; i < count; i++) {
      const refusal = checkReport(memory, report(`n-${i}`, T0 + i * 1000));
      assert.ok(refusal, `report ${i} is refused`);
      assert.equal(refusal.code, i < count - NONCE_LIMIT ? 'STALE_REPORT' : 'STALE_NONCE', `report ${i}`);
    }
    assert.equal(checkReport(memory, report('n-new', now)), undefined);
  });

  it('forgets nonces whose reports left the window, and still refuses those reports by time', () => {
    let memory = accept(3);
    const later = T0 + REPORT_WINDOW_MS + 10_000;
    memory = rememberReport(memory, report('n-late', later), later);
    assert.deepEqual(memory.seen.map(([n]) => n), ['n-late']);
    assert.equal(memory.floor, T0 + 2000);
    // Even with the director's clock set back, the forgotten reports stay refused.
    assert.equal(checkReport(memory, report('n-1', T0 + 1000))?.code, 'STALE_REPORT');
  });

  it('refuses a report with an empty nonce', () => {
    assert.equal(checkReport(readMemory(undefined, T0), report('', T0))?.code, 'STALE_NONCE');
  });

  it('accepts a report whatever its distance from the director\'s clock: only times the same ECU signed are compared', () => {
    assert.equal(checkReport(readMemory(undefined, T0), report('n-behind', T0 - 365 * 86400_000)), undefined);
  });

  it('accepts a report from a clock that runs fast, and remembers its nonce', () => {
    const ahead = T0 + 90 * 86400_000;
    const memory = rememberReport(readMemory(undefined, T0), report('n-ahead', ahead), T0);
    assert.equal(checkReport(readMemory(undefined, T0), report('n-ahead', ahead)), undefined);
    assert.equal(checkReport(memory, report('n-ahead', ahead))?.code, 'STALE_NONCE');
  });

  it('reads the plain nonce lists stored before reports were timed as nonces seen now', () => {
    const memory = readMemory(['old-1', 'old-2'], T0);
    assert.deepEqual(memory, { seen: [['old-1', T0], ['old-2', T0]], floor: 0 });
    assert.equal(checkReport(memory, report('old-2', T0))?.code, 'STALE_NONCE');
  });
});
