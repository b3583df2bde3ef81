import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadError, HttpError, LengthLimitError, LengthOrHashMismatchError, SlowRetrievalError } from '@upfleet/core';
import { DEFAULT_LIMITS } from './config.ts';
import { HttpFetcher } from './fetcher.ts';
import { ImageCache, targetUrl, type ImageTarget } from './image-cache.ts';
import { listenLoopback, type Loopback } from '../../test/support/loopback.ts';

const image = randomBytes(300_000);
const target: ImageTarget = {
  name: 'fw.bin',
  length: image.length,
  hashes: { sha256: createHash('sha256').update(image).digest('hex'), sha512: createHash('sha512').update(image).digest('hex') },
};

/** Per-path behaviour: how the loopback server answers. */
type Mode = 'ok' | 'cutOnce' | 'noRange' | 'tampered' | 'longer' | 'slow';
let mode: Mode = 'ok';
let cut = false;
const ranges: string[] = [];
let server: Loopback;
let base: string;
const dirs: string[] = [];

before(async () => {
  server = await listenLoopback(http.createServer((req, res) => {
    if (req.url !== new URL(targetUrl('http://x', target)).pathname) return void res.writeHead(404).end();
    ranges.push(req.headers.range ?? '');
    let body: Buffer = image;
    if (mode === 'tampered') body = Buffer.from(image.map((b, i) => (i === 1000 ? b ^ 1 : b)));
    if (mode === 'longer') body = Buffer.concat([image, Buffer.alloc(10)]);
    const m = /bytes=(\d+)-/.exec(req.headers.range ?? '');
    if (m && mode !== 'noRange') {
      const from = Number(m[1]);
      res.writeHead(206, { 'content-length': body.length - from, 'content-range': `bytes ${from}-${body.length - 1}/${body.length}` });
      return void res.end(body.subarray(from));
    }
    if (mode === 'slow') {
      res.writeHead(200, { 'content-length': body.length });
      res.write(body.subarray(0, 10));
      return; // then nothing: the guard must abort
    }
    if (mode === 'cutOnce' && !cut) {
      cut = true;
      res.writeHead(200, { 'content-length': body.length });
      res.write(body.subarray(0, 100_000), () => res.destroy());
      return;
    }
    res.writeHead(200, { 'content-length': body.length }).end(body);
  }));
  base = server.url;
});
after(async () => {
  await server.close();
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

function cache(min = 0, windowSeconds = 0.3) {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-images-'));
  dirs.push(dir);
  const fetcher = new HttpFetcher({ ...DEFAULT_LIMITS, minBytesPerSecond: min, slowWindowSeconds: windowSeconds });
  return new ImageCache(dir, fetcher, base);
}

function reset(m: Mode) {
  mode = m;
  cut = false;
  ranges.length = 0;
}

describe('ImageCache.download', () => {
  it('downloads, verifies every hash, and reports progress', async () => {
    reset('ok');
    const c = cache();
    const seen: number[] = [];
    const path = await c.download(target, { attempts: 1, onProgress: (d) => seen.push(d) });
    assert.deepEqual(readFileSync(path), image);
    assert.equal(seen.at(-1), image.length);
    assert.ok(c.has(target));
  });

  describe('when the connection drops mid-way', () => {
    it('resumes with Range from the bytes on disk', async () => {
      reset('cutOnce');
      const c = cache();
      const retries: DownloadError[] = [];
      const path = await c.download(target, { attempts: 3, onRetry: (e) => retries.push(e) });
      assert.deepEqual(readFileSync(path), image);
      assert.equal(retries.length, 1);
      assert.equal(ranges[0], '');
      assert.match(ranges[1]!, /^bytes=\d+-$/);
      assert.ok(Number(/\d+/.exec(ranges[1]!)![0]) > 0);
    });

    it('starts over when the server ignores Range', async () => {
      reset('noRange');
      const c = cache();
      writeFileSync(c.path(target).replace('.image', '.partial'), image.subarray(0, 5000));
      const path = await c.download(target, { attempts: 1 });
      assert.deepEqual(readFileSync(path), image);
    });

    it('re-hashes the partial bytes, so a corrupted partial file is caught', async () => {
      reset('ok');
      const c = cache();
      const partial = c.path(target).replace('.image', '.partial');
      writeFileSync(partial, Buffer.alloc(5000, 7));
      await assert.rejects(c.download(target, { attempts: 1 }), (e: unknown) => e instanceof LengthOrHashMismatchError && e.field === 'sha256');
      assert.equal(existsSync(partial), false);
      assert.equal(c.has(target), false);
    });
  });

  it('refuses a tampered image and keeps nothing', async () => {
    reset('tampered');
    const c = cache();
    await assert.rejects(c.download(target, { attempts: 3 }), (e: unknown) => e instanceof LengthOrHashMismatchError && e.subject === 'fw.bin');
    assert.equal(c.has(target), false);
    assert.equal(ranges.length, 1, 'a hash mismatch is not retried');
  });

  it('refuses more bytes than the signed length (endless data)', async () => {
    reset('longer');
    const c = cache();
    await assert.rejects(c.download(target, { attempts: 1 }), (e: unknown) => e instanceof LengthLimitError && e.limit === image.length);
    assert.equal(c.has(target), false);
  });

  it('aborts a slow server with SlowRetrievalError', async () => {
    reset('slow');
    const c = cache(10_000, 0.2);
    await assert.rejects(c.download(target, { attempts: 1 }), (e: unknown) => e instanceof SlowRetrievalError && e.minimum === 10_000);
  });

  it('reports a missing image as HttpError 404', async () => {
    reset('ok');
    const c = cache();
    const other = { ...target, hashes: { sha256: '00'.repeat(32) } };
    await assert.rejects(c.download(other, { attempts: 1 }), (e: unknown) => e instanceof HttpError && e.status === 404);
  });
});

describe('ImageCache.removeInstalled', () => {
  it('deletes the images of activated ECUs, keeps one another ECU still needs, and ignores entries that name no file', async () => {
    reset('ok');
    const c = cache();
    await c.download(target, { attempts: 1 });
    const other = { ...target, name: 'other.bin', hashes: { sha256: 'cd'.repeat(32) } };
    writeFileSync(c.path(other).replace('.image', '.partial'), Buffer.alloc(10));
    const bogus = { ...target, name: 'bogus.bin', ecuSerial: 'ecu-x', hashes: { sha256: 'not hex' } };
    const plan = [{ ...target, ecuSerial: 'ecu-a' }, { ...target, ecuSerial: 'ecu-b' }, { ...other, ecuSerial: 'ecu-c' }, bogus];
    c.removeInstalled(plan, ['ecu-a']);
    assert.ok(c.has(target), 'ecu-b has yet to install the same image');
    c.removeInstalled(plan, ['ecu-a', 'ecu-b', 'ecu-c']);
    assert.equal(existsSync(c.path(target)), false);
    assert.equal(existsSync(c.path(other).replace('.image', '.partial')), false);
  });
});
