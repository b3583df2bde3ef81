import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ProgressEvent } from './cycle.ts';
import { ProgressThrottle } from './progress-throttle.ts';

const dl = (ecuSerial: string, done: number, total = 1000): ProgressEvent => ({ ecuSerial, state: 'downloading', done, total });

describe('ProgressThrottle', () => {
  describe('within one ECU and phase', () => {
    it('admits the first event, then at most one per interval, and always the last', () => {
      const t = new ProgressThrottle(2000);
      // A chunk every 100 ms for 5 s: 50 events.
      const admitted: number[] = [];
      for (let i = 0; i < 50; i++) {
        const done = i === 49 ? 1000 : i * 20;
        if (t.admit(dl('brake', done), i * 100)) admitted.push(i * 100);
      }
      assert.deepEqual(admitted, [0, 2000, 4000, 4900]);
    });

    it('drops an event that repeats the last admitted count, the final one too', () => {
      const t = new ProgressThrottle(2000);
      assert.equal(t.admit(dl('brake', 1000), 0), true);
      assert.equal(t.admit(dl('brake', 1000), 5000), false);
    });

    it('admits a count that went back (a restarted transfer) once the interval passed', () => {
      const t = new ProgressThrottle(2000);
      assert.equal(t.admit(dl('brake', 600), 0), true);
      assert.equal(t.admit(dl('brake', 0), 100), false);
      assert.equal(t.admit(dl('brake', 0), 2100), true);
    });
  });

  describe('across ECUs and phases', () => {
    it('limits each ECU and each phase on its own', () => {
      const t = new ProgressThrottle(2000);
      assert.equal(t.admit(dl('brake', 10), 0), true);
      assert.equal(t.admit(dl('door', 10), 1), true);
      assert.equal(t.admit({ ecuSerial: 'brake', state: 'installing', done: 10, total: 1000 }, 2), true);
      assert.equal(t.admit(dl('brake', 20), 3), false);
      assert.equal(t.admit(dl('door', 20), 4), false);
    });
  });

  describe('reset', () => {
    it('admits the first event of the next cycle at once', () => {
      const t = new ProgressThrottle(2000);
      assert.equal(t.admit(dl('brake', 10), 0), true);
      t.reset();
      assert.equal(t.admit(dl('brake', 20), 1), true);
    });
  });
});
