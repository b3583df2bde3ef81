/** The director's info-level log of what operators look for: registrations, accepted manifests, shutdown. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { harness, SimDevice } from './testing/harness.ts';

describe('director logs', () => {
  it('logs at info a device registration, an accepted manifest and the shutdown', async () => {
    const entries: Array<Record<string, any>> = [];
    const sink = new Writable({
      write: (chunk: Buffer, _e, cb) => cb(void entries.push(...chunk.toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)))),
    });
    const h = await harness({ logger: pino({ name: 'upfleet-director', level: 'info' }, sink) });
    let closed = false;
    try {
      const d = new SimDevice('log-1');
      await h.register(d, ['eu']);
      assert.equal((await h.send(d, d.manifest())).status, 200);
      await h.director.close();
      closed = true;
      const of = (msg: string) => entries.filter((e) => e.msg === msg);
      assert.deepEqual(of('device registered').map((e) => [e.level, e.deviceId, e.status, e.ecus, e.tags]), [[30, 'log-1', 'active', 2, ['eu']]]);
      assert.deepEqual(of('manifest accepted').map((e) => [e.level, e.deviceId, e.via, e.counter, e.changed]), [[30, 'log-1', 'http', 1, []]]);
      assert.deepEqual(of('director stopped').map((e) => [e.level, e.url]), [[30, h.director.url]]);
      assert.equal(entries.at(-1)!.msg, 'director stopped');
    } finally {
      if (!closed) await h.director.close();
      await h.imageRepo.close();
      rmSync(h.dir, { recursive: true, force: true });
    }
  });
});
