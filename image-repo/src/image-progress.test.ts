import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { countBytes, ProgressLine, type ImageProgress } from './image-progress.ts';

const MiB = 1024 * 1024;

function line(tty: boolean) {
  let text = '';
  let t = 0;
  const progress = new ProgressLine((s) => void (text += s), tty, () => t);
  return {
    at(ms: number, p: Omit<ImageProgress, 'name'>) {
      t = ms;
      progress.update({ name: 'fw.bin', ...p });
    },
    text: () => text,
  };
}

describe('ProgressLine', () => {
  it('off a terminal, writes only one final line with size, time and rate', () => {
    const l = line(false);
    l.at(0, { phase: 'uploading', done: 64 * 1024, total: 200 * MiB });
    l.at(3_500, { phase: 'uploading', done: 100 * MiB, total: 200 * MiB });
    l.at(7_000, { phase: 'uploading', done: 200 * MiB, total: 200 * MiB, finished: true });
    assert.equal(l.text(), 'uploaded fw.bin: 200 MiB in 7.0 s (28.6 MiB/s)\n');
  });

  it('on a terminal, redraws one line at most every 100 ms, then replaces it with the final line', () => {
    const l = line(true);
    l.at(0, { phase: 'hashing', done: 1 * MiB, total: 4 * MiB });
    l.at(50, { phase: 'hashing', done: 2 * MiB, total: 4 * MiB });
    l.at(1000, { phase: 'hashing', done: 3 * MiB, total: 4 * MiB });
    l.at(1200, { phase: 'hashing', done: 4 * MiB, total: 4 * MiB, finished: true });
    const draws = l.text().split('\r\x1b[2K').slice(1);
    assert.equal(draws.length, 3, JSON.stringify(l.text()));
    assert.equal(draws[0], 'hashing fw.bin [######------------------]  25% 1.00/4.00 MiB');
    assert.equal(draws[1], 'hashing fw.bin [##################------]  75% 3.00/4.00 MiB  3.00 MiB/s');
    assert.equal(draws[2], 'hashed fw.bin: 4.00 MiB in 1.2 s (3.33 MiB/s)\n');
  });
});

describe('countBytes', () => {
  it('passes every chunk through and reports its length', async () => {
    const seen: number[] = [];
    const out: number[] = [];
    async function* source() {
      yield new Uint8Array(3);
      yield new Uint8Array(5);
    }
    for await (const c of countBytes(source(), (n) => seen.push(n))) out.push(c.byteLength);
    assert.deepEqual(seen, [3, 5]);
    assert.deepEqual(out, [3, 5]);
  });
});
