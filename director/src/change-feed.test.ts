import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChangeFeed, diffFingerprints, type FleetChange } from './change-feed.ts';

describe('diffFingerprints', () => {
  it('names records that changed, appeared or disappeared, by kind', () => {
    const before = new Map([['d:a', '1'], ['d:b', '1'], ['a:x', 'pending'], ['c:k', 'running']]);
    const after = new Map([['d:a', '1'], ['d:b', '2'], ['a:y', 'pending'], ['c:k', 'running']]);
    assert.deepEqual(diffFingerprints(before, after), { devices: ['b'], assignments: ['y', 'x'], campaigns: [] });
  });

  it('is undefined when nothing changed', () => {
    assert.equal(diffFingerprints(new Map([['d:a', '1']]), new Map([['d:a', '1']])), undefined);
  });
});

describe('ChangeFeed', () => {
  it('reads only while someone listens, and tells every listener each change once', async () => {
    let state = new Map([['d:a', '1']]);
    let reads = 0;
    const feed = new ChangeFeed(() => (reads++, state), 20);
    const seen: FleetChange[][] = [[], []];
    const stops = seen.map((list) => feed.subscribe((c) => list.push(c)));
    state = new Map([['d:a', '2']]);
    await new Promise((r) => setTimeout(r, 70));
    assert.deepEqual(seen, [[{ devices: ['a'], assignments: [], campaigns: [] }], [{ devices: ['a'], assignments: [], campaigns: [] }]]);
    for (const stop of stops) stop();
    assert.equal(feed.listeners, 0);
    const after = reads;
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(reads, after, 'no reads without listeners');
  });

  it('skips a tick whose read fails and reports it', async () => {
    let fail = true;
    const errors: unknown[] = [];
    const feed = new ChangeFeed(() => {
      if (fail && errors.length === 0 && feed.listeners > 0) throw new Error('busy');
      return new Map([['c:k', fail ? 'draft' : 'running']]);
    }, 20, (e) => errors.push(e));
    const seen: FleetChange[] = [];
    const stop = feed.subscribe((c) => seen.push(c));
    await new Promise((r) => setTimeout(r, 50));
    fail = false;
    await new Promise((r) => setTimeout(r, 50));
    stop();
    assert.equal(errors.length, 1);
    assert.deepEqual(seen, [{ devices: [], assignments: [], campaigns: ['k'] }]);
  });
});
