import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FleetChange } from './admin-records.ts';
import { ChangeFeed, changeOf } from './change-feed.ts';
import type { ChangeBatch } from './store.ts';

const row = (kind: ChangeBatch['changes'][number]['kind'], id: string, stamp: string) => ({ kind, id, stamp });

describe('changeOf', () => {
  it('names the changed records by kind, once each, leaving out rows read before with the same stamp', () => {
    const batch: ChangeBatch = { cursor: '9', changes: [row('devices', 'a', '5'), row('devices', 'b', '7'), row('assignments', 'x', '7'), row('assignments', 'x', '8'), row('campaigns', 'k', '3')] };
    const seen = new Set(['devices:5:a', 'campaigns:3:k', 'campaigns:2:other']);
    assert.deepEqual(changeOf(batch, seen), { devices: ['b'], assignments: ['x'], campaigns: [] });
  });

  it('is undefined when every row was seen', () => {
    assert.equal(changeOf({ cursor: '1', changes: [row('devices', 'a', '1')] }, new Set(['devices:1:a'])), undefined);
    assert.equal(changeOf({ cursor: '1', changes: [] }, new Set()), undefined);
  });
});

describe('ChangeFeed', () => {
  it('reads only while someone listens, passes its cursor on, and tells every listener each change once', async () => {
    let pending: ChangeBatch['changes'] = [];
    const cursors: Array<string | undefined> = [];
    let next = 0;
    const feed = new ChangeFeed((cursor) => {
      cursors.push(cursor);
      const batch = { cursor: String(++next), changes: pending };
      pending = [];
      return batch;
    }, 20);
    const seen: FleetChange[][] = [[], []];
    const stops = seen.map((list) => feed.subscribe((c) => list.push(c)));
    await new Promise((r) => setTimeout(r, 30));
    pending = [row('devices', 'a', '2')];
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(seen, [[{ devices: ['a'], assignments: [], campaigns: [] }], [{ devices: ['a'], assignments: [], campaigns: [] }]]);
    assert.equal(cursors[0], undefined, 'the first read takes the cursor');
    assert.deepEqual(cursors.slice(1, 3), ['1', '2']);
    for (const stop of stops) stop();
    assert.equal(feed.listeners, 0);
    const after = cursors.length;
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(cursors.length, after, 'no reads without listeners');
  });

  it('does not report the first read (the baseline) nor a row named again with the same stamp', async () => {
    const feed = new ChangeFeed((cursor) => ({ cursor: 'h', changes: cursor === undefined ? [row('devices', 'old', '1')] : [row('campaigns', 'k', '4')] }), 20);
    const seen: FleetChange[] = [];
    const stop = feed.subscribe((c) => seen.push(c));
    await new Promise((r) => setTimeout(r, 90));
    stop();
    assert.deepEqual(seen, [{ devices: [], assignments: [], campaigns: ['k'] }]);
  });

  it('skips a tick whose read fails, reports it, and reads again from the same cursor', async () => {
    let fail = false;
    const errors: unknown[] = [];
    const cursors: Array<string | undefined> = [];
    const feed = new ChangeFeed((cursor) => {
      cursors.push(cursor);
      if (fail) {
        fail = false;
        throw new Error('busy');
      }
      return { cursor: cursor === undefined ? 'c1' : 'c2', changes: cursor === 'c1' ? [row('campaigns', 'k', '2')] : [] };
    }, 20, (e) => errors.push(e));
    const seen: FleetChange[] = [];
    fail = false;
    const stop = feed.subscribe((c) => seen.push(c));
    await new Promise((r) => setTimeout(r, 5));
    fail = true;
    await new Promise((r) => setTimeout(r, 70));
    stop();
    assert.equal(errors.length, 1);
    assert.deepEqual(cursors.slice(0, 3), [undefined, 'c1', 'c1']);
    assert.deepEqual(seen, [{ devices: [], assignments: [], campaigns: ['k'] }]);
  });
});
