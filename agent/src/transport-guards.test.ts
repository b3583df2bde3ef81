/**
 * Every kind of HTTP request the agent makes (registration, manifest, progress
 * event, metadata GET, image GET) against a real loopback server that answers
 * without end or one byte at a time: each fails with the typed error of the
 * guard that must fire (LengthLimitError, SlowRetrievalError,
 * DeadlineExceededError), soon, and without reading more than its cap.
 */
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeadlineExceededError, Ed25519Signer, LengthLimitError, SlowRetrievalError } from '@upfleet/core';
import { DEFAULT_LIMITS } from './config.ts';
import { DeviceTokens } from './device-token.ts';
import { DirectorClient } from './director-client.ts';
import { HttpFetcher, type TransportLimits } from './fetcher.ts';
import { ImageCache, type ImageTarget } from './image-cache.ts';
import { listenLoopback, type Loopback } from '../../test/support/loopback.ts';

type Mode = 'endless' | 'trickle';

/**
 * How the server answers, what it wrote to the open responses, how many it answered and
 * how many of those were closed (a plain GET asks twice: plain-get.ts hangs up at a head
 * without Content-Length, and node:http asks again).
 */
const server = { mode: 'endless' as Mode, written: 0, answered: 0, closed: 0 };
/** The client hung up every response the server answered. */
const allClosed = () => server.answered > 0 && server.closed === server.answered;
let httpServer: Loopback;
let base: string;
let dir: string;

const IMAGE = Buffer.alloc(4000, 0x61);
const IMAGE_TARGET: ImageTarget = { name: 'fw.bin', length: IMAGE.length, hashes: { sha256: createHash('sha256').update(IMAGE).digest('hex') } };

async function answer(res: http.ServerResponse): Promise<void> {
  server.answered++;
  res.on('close', () => server.closed++);
  res.writeHead(200, { 'content-type': 'application/json' });
  if (server.mode === 'trickle') {
    // One byte every 200 ms, for as long as the client listens.
    while (!res.destroyed) {
      res.write('{');
      server.written++;
      await new Promise((r) => setTimeout(r, 200));
    }
    return;
  }
  const filler = Buffer.alloc(64 * 1024, 0x20);
  while (!res.destroyed) {
    server.written += filler.length;
    if (res.write(filler)) continue;
    // Whichever comes first; the other listener goes too, or 'close' ones pile up over the drains.
    await new Promise<void>((d) => {
      const done = () => {
        res.off('drain', done).off('close', done);
        d();
      };
      res.once('drain', done).once('close', done);
    });
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'upfleet-guards-'));
  httpServer = await listenLoopback(http.createServer((req, res) => {
    req.resume();
    req.once('end', () => void answer(res));
  }));
  base = httpServer.url;
});

after(async () => {
  await httpServer.close();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  server.written = 0;
  server.answered = 0;
  server.closed = 0;
});

const tokens = new DeviceTokens('car-1', Ed25519Signer.generate());
const directorClient = (limits: TransportLimits) => new DirectorClient(base, 'car-1', tokens, new HttpFetcher(limits));
/** A delivery's typed error, thrown (the outbox keeps the message for a retry). */
async function deliver(limits: TransportLimits, kind: 'manifest' | 'progress'): Promise<void> {
  const d = await directorClient(limits).deliver({ id: 1, kind, payload: '{"signed":{"counter":1}}', attempts: 0 });
  assert.equal(d.outcome, 'retry');
  throw (d as { error?: Error }).error ?? new Error(`no typed error: ${JSON.stringify(d)}`);
}

let images = 0;
const KINDS: Array<{ kind: string; cap: (l: TransportLimits) => number; run: (l: TransportLimits) => Promise<unknown> }> = [
  { kind: 'registration POST', cap: (l) => l.maxResponseBytes, run: (l) => directorClient(l).register({ primary: { ecuSerial: 'gw', hardwareId: 'gw', publicKey: {} }, secondaries: [] }, 'token') },
  { kind: 'manifest POST', cap: (l) => l.maxResponseBytes, run: (l) => deliver(l, 'manifest') },
  { kind: 'progress event POST', cap: (l) => l.maxResponseBytes, run: (l) => deliver(l, 'progress') },
  { kind: 'metadata GET', cap: () => 100_000, run: (l) => new HttpFetcher(l, () => tokens.header()).fetch(`${base}/api/v1/devices/car-1/metadata/timestamp.json`, 100_000) },
  {
    kind: 'image GET',
    cap: () => IMAGE_TARGET.length,
    run: (l) => new ImageCache(join(dir, `images-${++images}`), new HttpFetcher(l), base).download(IMAGE_TARGET, { attempts: 1 }),
  },
];

describe('every agent request', () => {
  for (const k of KINDS) {
    describe(k.kind, () => {
      it('stops an endless body at its cap with LengthLimitError', async () => {
        server.mode = 'endless';
        const limits: TransportLimits = { ...DEFAULT_LIMITS, maxResponseBytes: 8 * 1024, minBytesPerSecond: 0 };
        const rss = process.memoryUsage().rss;
        await assert.rejects(k.run(limits), (e: unknown) => {
          assert.ok(e instanceof LengthLimitError, String(e));
          assert.equal(e.limit, k.cap(limits));
          assert.ok(e.received > e.limit && e.received <= e.limit + 64 * 1024, `read ${e.received} bytes for a cap of ${e.limit}`);
          return true;
        });
        await waitFor(allClosed);
        // Bounded: the client hung up, after at most a few socket buffers' worth per connection.
        assert.ok(server.written < server.answered * 8 * 1024 * 1024, `the server wrote ${server.written} bytes on ${server.answered} connection(s) before the client hung up`);
        assert.ok(process.memoryUsage().rss - rss < 64 * 1024 * 1024, 'no growth with the endless body');
      });

      it('gives up on a 1-byte-per-200 ms trickle below the minimum rate with SlowRetrievalError', async () => {
        server.mode = 'trickle';
        const limits: TransportLimits = { ...DEFAULT_LIMITS, minBytesPerSecond: 100, slowWindowSeconds: 0.5, requestTimeoutSeconds: 30 };
        const t0 = Date.now();
        await assert.rejects(k.run(limits), (e: unknown) => {
          assert.ok(e instanceof SlowRetrievalError && !(e instanceof DeadlineExceededError), String(e));
          assert.equal(e.minimum, 100);
          assert.ok(e.bytesPerSecond < 100);
          return true;
        });
        assert.ok(Date.now() - t0 < 3000, `cut off after ${Date.now() - t0} ms`);
        await waitFor(allClosed);
      });

      it('gives up at the deadline on a trickle when no minimum rate is set, with DeadlineExceededError', async () => {
        // No window guard (minBytesPerSecond 0): only the deadline (requestTimeoutSeconds alone then) stops the trickle.
        server.mode = 'trickle';
        const limits: TransportLimits = { ...DEFAULT_LIMITS, minBytesPerSecond: 0, requestTimeoutSeconds: 1 };
        const t0 = Date.now();
        await assert.rejects(k.run(limits), (e: unknown) => {
          assert.ok(e instanceof DeadlineExceededError, String(e));
          assert.equal(e.deadlineMs, 1000);
          assert.ok(e.received >= 1 && e.received <= 10, `received ${e.received}`);
          return true;
        });
        const took = Date.now() - t0;
        assert.ok(took >= 900 && took < 3000, `cut off after ${took} ms`);
        await waitFor(allClosed);
      });
    });
  }

  it("a download's deadline allows its length at the minimum rate", async () => {
    // 12 bytes at 5 B/s take 2.4 s, past requestTimeoutSeconds (1 s) but within 1 s + 12 B at 2 B/s.
    server.mode = 'trickle';
    const limits: TransportLimits = { ...DEFAULT_LIMITS, minBytesPerSecond: 2, slowWindowSeconds: 1, requestTimeoutSeconds: 1 };
    const fetcher = new HttpFetcher(limits);
    const t0 = Date.now();
    const res = await fetcher.stream({ url: `${base}/targets/x`, maxLength: 12 });
    let got = 0;
    await assert.rejects(
      (async () => {
        for await (const c of res.body) got += c.byteLength;
      })(),
      LengthLimitError, // the trickle never ends: the signed length stops it, not the deadline
    );
    assert.ok(got === 12 && Date.now() - t0 > 2000, `read ${got} bytes in ${Date.now() - t0} ms`);
  });
});

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail('timed out waiting for the server to see the client hang up');
    await new Promise((r) => setTimeout(r, 10));
  }
}
