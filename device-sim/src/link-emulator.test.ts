import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { duplexPair } from './duplex-pair.ts';
import { LinkEmulator, type EmulatorOptions } from './link-emulator.ts';
import { prng } from '@upfleet/core';

/** primary <-> emulator <-> ecu, and a collector of what reaches the ECU end. */
function line(options: EmulatorOptions) {
  const [primary, a] = duplexPair();
  const [b, ecu] = duplexPair();
  const emulator = new LinkEmulator(a, b, options);
  const received: Buffer[] = [];
  let firstAt = 0;
  ecu.on('data', (d: Buffer) => {
    firstAt ||= performance.now();
    received.push(d);
  });
  return { primary, ecu, emulator, received: () => Buffer.concat(received), firstAt: () => firstAt };
}

const until = async (cond: () => boolean, ms = 5000) => {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

function data(n: number, seed = 1): Buffer {
  const r = prng(seed);
  return Buffer.from(new Uint8Array(n).map(() => Math.floor(r() * 256)));
}

describe('LinkEmulator', () => {
  it('paces to baud/10 bytes per second (8N1), never faster', async () => {
    const l = line({ baud: 115_200 });
    const input = data(5760); // half a second of line time
    const t0 = performance.now();
    l.primary.write(input);
    await until(() => l.received().length === input.length);
    const elapsed = performance.now() - t0;
    assert.ok(elapsed >= 0.97 * 500, `${elapsed.toFixed(0)} ms for 500 ms of line time`);
    assert.ok(elapsed < 1500, `${elapsed.toFixed(0)} ms`);
    assert.deepEqual(l.received(), input);
    l.emulator.close();
  });

  it('flips bits at the bit error rate, and counts every flip', async () => {
    const l = line({ ber: 1e-3, seed: 3 });
    const input = data(50_000);
    l.primary.write(input);
    await until(() => l.received().length === input.length);
    const out = l.received();
    let flipped = 0;
    for (let i = 0; i < input.length; i++) for (let x = input[i]! ^ out[i]!; x; x &= x - 1) flipped++;
    assert.equal(flipped, l.emulator.aToB.stats.bitsFlipped);
    assert.ok(flipped > 300 && flipped < 500, `${flipped} flips for 400 expected`);
    l.emulator.close();
  });

  it('drops bytes at the drop rate', async () => {
    const l = line({ dropRate: 0.01, seed: 4 });
    l.primary.write(data(20_000));
    await until(() => l.emulator.aToB.stats.bytesOut + l.emulator.aToB.stats.bytesDropped === 20_000);
    const dropped = l.emulator.aToB.stats.bytesDropped;
    assert.equal(l.received().length, 20_000 - dropped);
    assert.ok(dropped > 120 && dropped < 280, `${dropped} dropped for 200 expected`);
    l.emulator.close();
  });

  it('adds latency', async () => {
    const l = line({ latencyMs: 80 });
    const t0 = performance.now();
    l.primary.write(Buffer.from('x'));
    await until(() => l.received().length === 1);
    assert.ok(l.firstAt() - t0 >= 79, `${(l.firstAt() - t0).toFixed(1)} ms`);
    l.emulator.close();
  });

  it('loses everything while disconnected, in flight included, and carries bytes again after reconnect', async () => {
    const l = line({ baud: 9600 });
    l.primary.write(data(960)); // one second of line time
    await new Promise((r) => setTimeout(r, 100));
    l.emulator.disconnect();
    const before = l.received().length;
    assert.ok(before < 960);
    l.primary.write(Buffer.from('lost'));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(l.received().length, before);
    l.emulator.reconnect();
    l.primary.write(Buffer.from('kept'));
    await until(() => l.received().subarray(before).toString() === 'kept');
    assert.ok(l.emulator.aToB.stats.bytesLostDisconnected >= 960 - before + 4 - 1);
    l.emulator.close();
  });

  it('carries both directions independently', async () => {
    const l = line({ baud: 921_600 });
    const back: Buffer[] = [];
    l.primary.on('data', (d: Buffer) => back.push(d));
    (l.ecu as Duplex).write(Buffer.from('pong'));
    l.primary.write(Buffer.from('ping'));
    await until(() => Buffer.concat(back).toString() === 'pong' && l.received().toString() === 'ping');
    l.emulator.close();
  });
});
