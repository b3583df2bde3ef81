import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { utf8 } from '../bytes.ts';
import {
  cobsDecode, cobsEncode, crc32, decodePayload, EcuSession, encodeFrame, encodePayload, event, FRAME_TYPES, FrameBuffer,
  MAX_INCOMPLETE, NEED_DATA, PayloadError, PrimarySession, RemoteProtocolError, TYPE_OF_CODE, type Event,
} from './index.ts';
import { prng } from '../prng.ts';

const key = new Uint8Array(32).map((_, i) => i);
const info = {
  ecuSerial: 'ecu-1', hardwareId: 'brake', publicKey: key, verification: 'partial' as const,
  installed: { filename: 'fw-1.bin', length: 1000, hashes: { sha256: 'ab'.repeat(32) } }, releaseCounter: 3,
};

/** Golden vectors: [event, sequence, wire hex]. The hex is the protocol; never regenerate it from the code. */
const VECTORS: Array<[Event, number, string]> = [
  [{ type: 'Hello', versions: [1], maxChunk: 512, maxWindow: 8 }, 1, '0301010501010102010608efaaa61300'],
  [{ type: 'HelloReply', version: 1, chunkSize: 512, windowSize: 8, info }, 1,
    '03010204010102010f08056563752d31056272616b6520200102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0b010866772d312e62696e012c03e8010673686132353620abababababababababababababababababababababababababababababababab010106030b6dc17800'],
  [{ type: 'InfoRequest' }, 2, '030103060275b0670c00'],
  [{ type: 'Info', info: { ...info, installed: null, verification: 'full' } }, 2,
    '0301040f02056563752d31056272616b6520210102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f010101010603af9e56eb00'],
  [{ type: 'ReportRequest', nonce: 'n0nce' }, 3, '0301050c03056e306e6365c092b73d00'],
  [{ type: 'Report', report: utf8('{"signed":{}}') }, 3, '0301060203130d7b227369676e6564223a7b7d7d013f35d300'],
  [{ type: 'MetadataPart', repo: 'director', name: 'targets.json', total: 10, offset: 4, data: new Uint8Array([0, 1, 2]) }, 4,
    '03010702040e0c746172676574732e6a736f6e0101020a010102040203070102e9b1982200'],
  [{ type: 'MetadataEnd' }, 5, '0301080605e7811d4e00'],
  [{ type: 'ImageBegin', name: 'fw.bin', length: 70000, hashes: { sha256: '00'.repeat(32) } }, 6,
    '03010909060666772e62696e0d0111700106736861323536200101010101010101010101010101010101010101010101010101010101010105b8b4803a00'],
  [{ type: 'ImageReady', offset: 1024 }, 6, '03010a020601020405e6d4b01d00'],
  [{ type: 'ImageData', offset: 1024, data: new Uint8Array([0, 0, 0xff, 0]) }, 0, '03010b0101010204010102ff05cbe4b22000'],
  [{ type: 'ImageAck', next: 2048 }, 0, '03010c010101020805a6f13f8b00'],
  [{ type: 'ImageNak', next: 2048, missing: 2560 }, 0, '03010d01010102080101020a053d58ade000'],
  [{ type: 'ImageEnd' }, 7, '03010e04070d0202d000'],
  [{ type: 'Activate' }, 8, '03010f06089c7f777600'],
  [{ type: 'Abort' }, 9, '0301100609fc02a3ad00'],
  [{ type: 'Ok' }, 9, '0301110609fdc0c99a00'],
  [{ type: 'Refusal', code: 'BUSY', retryAfterMs: 250, detail: 'erasing' }, 6, '03011202060204010102fa0d0765726173696e674c19516000'],
];

const hex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));

/** Feeds `chunks` to a FrameBuffer and decodes every complete frame. */
function decodeAll(chunks: Uint8Array[]): { events: Array<[Event, number]>; left: number } {
  const buf = new FrameBuffer();
  const events: Array<[Event, number]> = [];
  for (const c of chunks) {
    buf.append(c);
    for (let r = buf.next(); r.kind !== 'need-data'; r = buf.next()) {
      assert.equal(r.kind, 'frame');
      if (r.kind !== 'frame') continue;
      events.push([decodePayload(TYPE_OF_CODE.get(r.frame.typeCode)!, r.frame.payload), r.frame.seq]);
    }
  }
  return { events, left: buf.buffered };
}

describe('crc32', () => {
  it('matches the standard check value', () => {
    assert.equal(crc32(utf8('123456789')), 0xcbf43926);
    assert.equal(crc32(new Uint8Array(0)), 0);
  });
});

describe('cobs', () => {
  it('round-trips edge cases and never emits 0x00', () => {
    const cases = [[], [0], [0, 0], [1], [1, 0, 2], Array(254).fill(7), Array(255).fill(7), [...Array(300).keys()].map((i) => i % 256)];
    for (const c of cases) {
      const enc = cobsEncode(Uint8Array.from(c));
      assert.ok(!enc.includes(0), `0x00 in encoding of ${c.length} bytes`);
      assert.deepEqual([...cobsDecode(enc)!], c);
    }
  });
  it('refuses a code that runs past the end', () => {
    assert.equal(cobsDecode(Uint8Array.from([5, 1, 2])), undefined);
  });
});

describe('golden vectors', () => {
  it('cover every frame type', () => {
    assert.deepEqual(new Set(VECTORS.map(([e]) => e.type)), new Set(Object.keys(FRAME_TYPES)));
  });
  for (const [e, seq, wire] of VECTORS) {
    describe(e.type, () => {
      it('encodes to the vector', () => {
        const bytes = encodeFrame({ version: 1, typeCode: FRAME_TYPES[e.type], seq, payload: encodePayload(event(e)) });
        assert.equal(Buffer.from(bytes).toString('hex'), wire);
      });
      it('decodes whole', () => {
        assert.deepEqual(decodeAll([hex(wire)]), { events: [[e, seq]], left: 0 });
      });
      it('decodes byte by byte', () => {
        const b = hex(wire);
        assert.deepEqual(decodeAll([...b].map((x) => Uint8Array.of(x))), { events: [[e, seq]], left: 0 });
      });
      it('decodes with trailing bytes left buffered', () => {
        const b = hex(wire);
        const trailing = hex(VECTORS[0]![2]).subarray(0, 5);
        const joined = new Uint8Array(b.length + trailing.length);
        joined.set(b);
        joined.set(trailing, b.length);
        assert.deepEqual(decodeAll([joined]), { events: [[e, seq]], left: 5 });
      });
      it('decoded events are frozen', () => {
        const [[decoded]] = decodeAll([hex(wire)]).events as [[Event, number]];
        assert.ok(Object.isFrozen(decoded));
      });
    });
  }
});

describe('frame damage', () => {
  it('a flipped bit is reported as corrupt, and the next frame still decodes', () => {
    const a = hex(VECTORS[2]![2]);
    a[3] ^= 0x10;
    const buf = new FrameBuffer();
    buf.append(a);
    buf.append(hex(VECTORS[3]![2]));
    assert.equal(buf.next().kind, 'corrupt');
    assert.equal(buf.next().kind, 'frame');
    assert.equal(buf.next().kind, 'need-data');
  });
  it('bytes without a delimiter past the cap overflow into a RemoteProtocolError', () => {
    const s = new EcuSession();
    s.receive(new Uint8Array(MAX_INCOMPLETE + 1).fill(0x55));
    assert.throws(() => s.nextEvent(), (e: unknown) => e instanceof RemoteProtocolError && /delimiter/.test(e.reason));
    assert.equal(s.state, 'ERROR');
    assert.throws(() => s.nextEvent(), RemoteProtocolError, 'stays in ERROR');
    s.reset();
    assert.equal(s.state, 'IDLE');
    assert.equal(s.nextEvent(), NEED_DATA);
  });
  it('a well-formed frame of an unknown version is a remote error', () => {
    const p = new PrimarySession();
    p.receive(encodeFrame({ version: 2, typeCode: FRAME_TYPES.Ok, seq: 1, payload: new Uint8Array(0) }));
    assert.throws(() => p.nextEvent(), (e: unknown) => e instanceof RemoteProtocolError && /version 2/.test(e.reason));
  });
  it('trailing payload bytes are a remote error', () => {
    const s = new EcuSession();
    s.receive(encodeFrame({ version: 1, typeCode: FRAME_TYPES.Hello, seq: 1, payload: Uint8Array.of(1, 1, 2, 0, 0, 8, 9) }));
    assert.throws(() => s.nextEvent(), (e: unknown) => e instanceof RemoteProtocolError && /trailing/.test(e.reason));
  });
});


/** An ECU session past its Hello, so requests reach it as events. */
function readyEcu(): EcuSession {
  const s = new EcuSession();
  s.receive(encodeFrame({ version: 1, typeCode: FRAME_TYPES.Hello, seq: 1, payload: encodePayload(event({ type: 'Hello', versions: [1], maxChunk: 512, maxWindow: 8 })) }));
  s.nextEvent();
  s.send({ type: 'HelloReply', version: 1, chunkSize: 512, windowSize: 8, info });
  return s;
}

function parseBody(wire: Uint8Array): { typeCode: number; payload: Uint8Array } {
  const body = cobsDecode(wire.subarray(0, wire.length - 1))!;
  return { typeCode: body[1]!, payload: body.subarray(4, body.length - 4) };
}

describe('fuzz', () => {
  it('10,000 random and mutated inputs yield events or RemoteProtocolError, never another throw', () => {
    const rand = prng(0x5eed);
    const valid = VECTORS.map(([, , w]) => hex(w));
    const bodies = VECTORS.map(([e, seq]) => ({ typeCode: FRAME_TYPES[e.type], seq, payload: encodePayload(event(e)) }));
    let remoteErrors = 0;
    let events = 0;
    for (let i = 0; i < 10_000; i++) {
      const kind = i % 4;
      let input: Uint8Array;
      if (kind === 0) {
        input = new Uint8Array(Math.floor(rand() * 600)).map(() => Math.floor(rand() * 256));
      } else if (kind === 1) {
        input = valid[Math.floor(rand() * valid.length)]!.slice();
        for (let k = 0, n = 1 + Math.floor(rand() * 4); k < n; k++) input[Math.floor(rand() * input.length)] = Math.floor(rand() * 256);
      } else {
        // Valid CRC around a mutated, truncated or extended payload: reaches the payload decoders.
        const b = bodies[Math.floor(rand() * bodies.length)]!;
        let payload = b.payload.slice(0, Math.floor(rand() * (b.payload.length + 1)));
        if (kind === 3) payload = Uint8Array.from([...b.payload, ...Array.from({ length: Math.floor(rand() * 8) }, () => Math.floor(rand() * 256))]);
        for (let k = 0, n = Math.floor(rand() * 3); k < n && payload.length > 0; k++) payload[Math.floor(rand() * payload.length)] = Math.floor(rand() * 256);
        const typeCode = rand() < 0.1 ? Math.floor(rand() * 256) : b.typeCode;
        input = encodeFrame({ version: rand() < 0.05 ? 2 : 1, typeCode, seq: b.seq, payload });
      }
      if (kind >= 2) {
        const body = parseBody(input);
        const type = TYPE_OF_CODE.get(body.typeCode);
        if (type) {
          try {
            decodePayload(type, body.payload);
            events++;
          } catch (e) {
            if (!(e instanceof PayloadError)) throw new Error(`payload ${i}: ${String(e)}`, { cause: e });
          }
        }
      }
      for (const session of [readyEcu(), new PrimarySession()]) {
        session.receive(input);
        try {
          for (let r = session.nextEvent(); typeof r === 'object'; r = session.nextEvent()) {
            events++;
            if (session instanceof EcuSession && session.state === 'RESPONDING') break;
          }
        } catch (e) {
          if (!(e instanceof RemoteProtocolError)) throw new Error(`input ${i} (${Buffer.from(input).toString('hex')}): ${String(e)}`, { cause: e });
          remoteErrors++;
        }
      }
    }
    assert.ok(remoteErrors > 1000, `${remoteErrors} remote errors`);
    assert.ok(events > 2000, `${events} events`);
  });
});
