import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ReceiveBufferReleaser } from './gc-pressure.ts';

/** The largest rise of arrayBuffers while 64 MiB of 64 KiB buffers are allocated and dropped. */
function maxRise(releaser: ReceiveBufferReleaser | undefined): number {
  const base = process.memoryUsage().arrayBuffers;
  let max = 0;
  for (let i = 0; i < 1024; i++) {
    const chunk = Buffer.allocUnsafeSlow(64 * 1024);
    chunk[0] = i;
    releaser?.received(chunk.byteLength);
    max = Math.max(max, process.memoryUsage().arrayBuffers - base);
  }
  return max;
}

describe('ReceiveBufferReleaser', () => {
  it('keeps dead receive buffers to a few MiB, where V8 alone lets them pile up', () => {
    const MiB = 2 ** 20;
    const bounded = maxRise(new ReceiveBufferReleaser(4 * MiB));
    assert.ok(bounded <= 12 * MiB, `bounded rise ${bounded / MiB} MiB`);
    const unbounded = maxRise(undefined);
    assert.ok(unbounded > bounded, `without: ${unbounded / MiB} MiB, with: ${bounded / MiB} MiB`);
  });
});
