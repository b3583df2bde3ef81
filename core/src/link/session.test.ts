import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { concatBytes } from '../bytes.ts';
import {
  EcuSession, LinkTimeoutError, LocalProtocolError, negotiate, NEED_DATA, PAUSED, PrimarySession, RemoteProtocolError,
  type EcuInfo, type Event, type NextEvent, encodeFrame, encodePayload, FRAME_TYPES,
} from './index.ts';
import { prng } from '../prng.ts';

const info: EcuInfo = { ecuSerial: 'ecu-1', hardwareId: 'brake', publicKey: new Uint8Array(32), verification: 'partial', installed: null, releaseCounter: 0 };


/** Collects every event the session has now. */
function drain(s: { nextEvent(): NextEvent }): Event[] {
  const out: Event[] = [];
  for (let e = s.nextEvent(); typeof e === 'object'; e = s.nextEvent()) out.push(e);
  return out;
}

/** A primary and an ECU past their Hello. */
function handshake(options: { maxChunk?: number; maxWindow?: number; rtoMs?: number; maxAttempts?: number } = {}) {
  const p = new PrimarySession(options);
  const ecu = new EcuSession();
  ecu.receive(p.send(p.hello(), 0));
  const hello = ecu.nextEvent() as Event & { type: 'Hello' };
  const n = negotiate(hello);
  assert.ok(!('type' in n));
  p.receive(ecu.send({ type: 'HelloReply', ...n, info }));
  assert.equal((p.nextEvent() as Event).type, 'HelloReply');
  return { p, ecu };
}

describe('handshake', () => {
  it('negotiates the smaller chunk and window', () => {
    const { p, ecu } = handshake({ maxChunk: 256, maxWindow: 4 });
    assert.deepEqual([p.negotiated?.chunkSize, p.negotiated?.windowSize], [256, 4]);
    assert.equal(p.state, 'READY');
    assert.equal(ecu.state, 'READY');
  });
  it('an ECU answering with a bigger chunk than offered is a remote error', () => {
    const p = new PrimarySession({ maxChunk: 256 });
    const ecu = new EcuSession();
    ecu.receive(p.send(p.hello(), 0));
    ecu.nextEvent();
    assert.throws(() => ecu.send({ type: 'HelloReply', version: 1, chunkSize: 512, windowSize: 4, info }), LocalProtocolError);
  });
});

describe('requests', () => {
  it('the ECU is PAUSED until it answers, then gets the next request', () => {
    const { p, ecu } = handshake();
    ecu.receive(p.send({ type: 'InfoRequest' }, 0));
    assert.equal((ecu.nextEvent() as Event).type, 'InfoRequest');
    assert.equal(ecu.nextEvent(), PAUSED);
    p.receive(ecu.send({ type: 'Info', info }));
    assert.equal((p.nextEvent() as Event).type, 'Info');
    assert.equal(ecu.nextEvent(), NEED_DATA);
  });
  it('a repeated request is answered from the cache and reaches the ECU once', () => {
    const { p, ecu } = handshake({ rtoMs: 10 });
    const bytes = p.send({ type: 'Activate' }, 0);
    ecu.receive(bytes);
    assert.equal((ecu.nextEvent() as Event).type, 'Activate');
    const reply = ecu.send({ type: 'Ok' });
    // The reply is lost; the primary times out and resends the same frame.
    const again = p.timeout(10);
    assert.deepEqual(again, bytes);
    ecu.receive(again);
    assert.equal(ecu.nextEvent(), NEED_DATA);
    assert.deepEqual(ecu.takeOutgoing(), reply);
    p.receive(reply);
    assert.deepEqual(p.nextEvent(), { type: 'Ok' });
    assert.equal(p.state, 'IDLE', 'activation reboots the ECU: Hello again');
  });
  it('a stale reply is ignored', () => {
    const { p, ecu } = handshake({ rtoMs: 10 });
    ecu.receive(p.send({ type: 'InfoRequest' }, 0));
    ecu.nextEvent();
    const first = ecu.send({ type: 'Info', info });
    p.receive(first);
    p.nextEvent();
    p.receive(first);
    assert.equal(p.nextEvent(), NEED_DATA);
    assert.equal(p.stats.ignored, 1);
  });
  it('a second request while one is pending is a local error and changes nothing', () => {
    const { p } = handshake();
    p.send({ type: 'InfoRequest' }, 0);
    assert.throws(() => p.send({ type: 'MetadataEnd' }, 0), LocalProtocolError);
    assert.equal(p.state, 'AWAIT_REPLY');
  });
  it('without an answer the request times out after maxAttempts sends, each wait twice the last, then stays in ERROR', () => {
    const { p } = handshake({ rtoMs: 10, maxAttempts: 3 });
    p.send({ type: 'InfoRequest' }, 0);
    assert.equal(p.deadline(), 10);
    assert.equal(p.timeout(5).length, 0);
    assert.ok(p.timeout(10).length > 0);
    assert.equal(p.deadline(), 30);
    assert.equal(p.timeout(29).length, 0);
    assert.ok(p.timeout(30).length > 0);
    assert.equal(p.deadline(), 70);
    assert.throws(() => p.timeout(70), (e: unknown) => e instanceof LinkTimeoutError && e.attempts === 3 && e.waitingFor === 'InfoRequest');
    assert.equal(p.state, 'ERROR');
    assert.throws(() => p.nextEvent(), LinkTimeoutError);
  });
  it('the backed-off wait stops growing at 8 x rtoMs', () => {
    const { p } = handshake({ rtoMs: 10, maxAttempts: 9 });
    p.send({ type: 'InfoRequest' }, 0);
    let now = 0;
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      now = p.deadline()!;
      p.timeout(now);
      waits.push(p.deadline()! - now);
    }
    assert.deepEqual(waits, [20, 40, 80, 80, 80, 80]);
  });
  it('an ECU that restarted answers HELLO_REQUIRED', () => {
    const { p } = handshake();
    const fresh = new EcuSession();
    fresh.receive(p.send({ type: 'InfoRequest' }, 0));
    assert.equal(fresh.nextEvent(), NEED_DATA);
    p.receive(fresh.takeOutgoing());
    const e = p.nextEvent() as Event;
    assert.equal(e.type === 'Refusal' && e.code, 'HELLO_REQUIRED');
    assert.equal(p.state, 'IDLE');
  });
  it('a reply sent to the ECU is a remote error', () => {
    const { ecu } = handshake();
    ecu.receive(encodeFrame({ version: 1, typeCode: FRAME_TYPES.Ok, seq: 1, payload: new Uint8Array(0) }));
    assert.throws(() => ecu.nextEvent(), (e: unknown) => e instanceof RemoteProtocolError && /unexpected Ok/.test(e.reason));
    assert.equal(ecu.state, 'ERROR');
  });
});

interface SimOptions {
  image: Uint8Array;
  seed: number;
  /** Probability that a frame (either direction) gets one bit flipped. */
  damage: number;
  /** Bytes the ECU already holds (resume). */
  held?: number;
  maxChunk?: number;
  maxWindow?: number;
}

/**
 * Runs a whole transfer on a virtual clock through a link that damages frames.
 * The ECU app stores chunks and acks them; the primary fills its window.
 */
function simulate(o: SimOptions) {
  const rand = prng(o.seed);
  const { p, ecu } = handshake({ maxChunk: o.maxChunk ?? 64, maxWindow: o.maxWindow ?? 4, rtoMs: 50, maxAttempts: 20 });
  const stored: Uint8Array[] = o.held ? [o.image.subarray(0, o.held)] : [];
  let storedLength = o.held ?? 0;
  let now = 0;
  const lossy = (b: Uint8Array) => {
    const out = b.slice();
    // Damage per frame: split at delimiters and maybe flip a bit in each.
    let start = 0;
    for (let i = 0; i < out.length; i++) {
      if (out[i] !== 0) continue;
      if (i > start && rand() < o.damage) out[start + Math.floor(rand() * (i - start))] ^= 1 << Math.floor(rand() * 8);
      start = i + 1;
    }
    return out;
  };
  const toEcu = (b: Uint8Array) => b.length && ecu.receive(lossy(b));
  const toPrimary = (b: Uint8Array) => b.length && p.receive(lossy(b));
  toEcu(p.send({ type: 'ImageBegin', name: 'fw.bin', length: o.image.length, hashes: {} }, now));
  let resumedAt = -1;
  let ended = false;
  for (let step = 0; step < 100_000 && !ended; step++) {
    let progressed = false;
    for (const e of drain(ecu)) {
      progressed = true;
      if (e.type === 'ImageBegin') toPrimary(ecu.send({ type: 'ImageReady', offset: storedLength }));
      else if (e.type === 'ImageData') {
        assert.equal(e.offset, storedLength, 'in order, exactly once');
        stored.push(e.data);
        storedLength += e.data.length;
        toPrimary(ecu.send({ type: 'ImageAck', next: storedLength }));
      } else if (e.type === 'ImageEnd') toPrimary(ecu.send({ type: 'Ok' }));
      else assert.fail(`ECU got ${e.type}`);
    }
    toPrimary(ecu.takeOutgoing());
    for (const e of drain({ nextEvent: () => p.nextEvent(now) })) {
      progressed = true;
      if (e.type === 'ImageReady') resumedAt = e.offset;
      if (e.type === 'Ok') ended = true;
    }
    toEcu(p.takeOutgoing());
    const t = p.transfer;
    while (p.windowOpen && t) {
      const off = p.transfer!.nextOffset;
      const chunk = o.image.subarray(off, Math.min(off + p.negotiated!.chunkSize, o.image.length));
      toEcu(p.send({ type: 'ImageData', offset: off, data: chunk }, now));
      progressed = true;
    }
    if (p.state === 'TRANSFER' && p.transfer!.acked === o.image.length) {
      toEcu(p.send({ type: 'ImageEnd' }, now));
      progressed = true;
    }
    if (!progressed) {
      now = Math.max(now + 1, p.deadline() ?? now + 1);
      toEcu(p.timeout(now));
    }
  }
  return { ended, delivered: concatBytes(stored), resumedAt, p, ecu, now };
}

function image(n: number, seed: number): Uint8Array {
  const r = prng(seed);
  return new Uint8Array(n).map(() => Math.floor(r() * 256));
}

describe('image transfer', () => {
  it('delivers byte-exact on a clean link, without retransmissions', () => {
    const img = image(10_000, 1);
    const r = simulate({ image: img, seed: 1, damage: 0 });
    assert.ok(r.ended);
    assert.deepEqual(r.delivered, img);
    assert.equal(r.p.stats.retransmits, 0);
  });
  it('resumes from the offset the ECU holds', () => {
    const img = image(5000, 2);
    const r = simulate({ image: img, seed: 2, damage: 0, held: 1234 });
    assert.equal(r.resumedAt, 1234);
    assert.deepEqual(r.delivered, img);
    assert.equal(r.p.stats.framesSent, 1 + 1 + Math.ceil((5000 - 1234) / 64) + 1, 'hello, begin, chunks, end');
  });
  for (const seed of [3, 4, 5, 6, 7]) {
    it(`delivers byte-exact when 20% of frames are damaged (seed ${seed})`, () => {
      const img = image(20_000, seed);
      const r = simulate({ image: img, seed, damage: 0.2, maxWindow: 8 });
      assert.ok(r.ended, 'transfer ended');
      assert.deepEqual(r.delivered, img);
      assert.ok(r.p.stats.retransmits > 0);
      assert.ok(r.ecu.stats.corrupt > 0);
    });
  }
  it('adapts the data RTO to the round trips acks show (a slow, queued line)', () => {
    const { p, ecu } = handshake({ maxChunk: 16, maxWindow: 4, rtoMs: 100 });
    ecu.receive(p.send({ type: 'ImageBegin', name: 'x', length: 16 * 40, hashes: {} }, 0));
    ecu.nextEvent();
    p.receive(ecu.send({ type: 'ImageReady', offset: 0 }));
    p.nextEvent(0);
    assert.equal(p.dataRtoMs, 100);
    let now = 0;
    for (let off = 0; off < 16 * 40; off += 16) {
      ecu.receive(p.send({ type: 'ImageData', offset: off, data: new Uint8Array(16) }, now));
      ecu.nextEvent();
      now += 500; // every chunk is acked 500 ms after it was sent
      p.receive(ecu.send({ type: 'ImageAck', next: off + 16 }));
      p.nextEvent(now);
    }
    assert.ok(p.dataRtoMs >= 500, `rto ${p.dataRtoMs}`);
    assert.equal(p.stats.retransmits, 0);
  });

  it('refuses to send past the window or out of order (local errors)', () => {
    const { p, ecu } = handshake({ maxChunk: 16, maxWindow: 1 });
    ecu.receive(p.send({ type: 'ImageBegin', name: 'x', length: 64, hashes: {} }, 0));
    ecu.nextEvent();
    p.receive(ecu.send({ type: 'ImageReady', offset: 0 }));
    p.nextEvent();
    assert.throws(() => p.send({ type: 'ImageData', offset: 16, data: new Uint8Array(16) }, 0), LocalProtocolError);
    p.send({ type: 'ImageData', offset: 0, data: new Uint8Array(16) }, 0);
    assert.equal(p.windowOpen, false);
    assert.throws(() => p.send({ type: 'ImageData', offset: 16, data: new Uint8Array(16) }, 0), LocalProtocolError);
    assert.throws(() => p.send({ type: 'ImageEnd' }, 0), LocalProtocolError, 'not everything is acked');
  });
  it('a chunk past the announced length is a remote error for the ECU', () => {
    const { p, ecu } = handshake({ maxChunk: 16 });
    ecu.receive(p.send({ type: 'ImageBegin', name: 'x', length: 20, hashes: {} }, 0));
    ecu.nextEvent();
    ecu.send({ type: 'ImageReady', offset: 16 });
    ecu.receive(encodeFrame({ version: 1, typeCode: FRAME_TYPES.ImageData, seq: 0, payload: encodePayload({ type: 'ImageData', offset: 16, data: new Uint8Array(16) }) }));
    assert.throws(() => ecu.nextEvent(), (e: unknown) => e instanceof RemoteProtocolError && /past length/.test(e.reason));
  });
});
