import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpFetcher } from './fetcher.ts';
import { DEFAULT_LIMITS } from './config.ts';
import { DownloadError, HttpError, LengthLimitError } from '@upfleet/core/errors.ts';

describe('HttpFetcher', () => {
  let server: http.Server;
  let base: string;

  before(async () => {
    server = http.createServer((req, res) => {
      switch (req.url) {
        case '/ok':
          res.writeHead(200, { 'content-length': 5 }).end('hello');
          return;
        case '/chunked': // no content-length: the cap must fire while streaming
          res.writeHead(200);
          res.write('x'.repeat(600));
          setTimeout(() => res.end('y'.repeat(600)), 5);
          return;
        case '/reset':
          res.writeHead(200, { 'content-length': 1000 });
          res.write('partial');
          setTimeout(() => res.socket?.destroy(), 5);
          return;
        case '/forbidden':
          res.writeHead(403).end();
          return;
        default:
          res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('returns the body', async () => {
    assert.equal(Buffer.from(await new HttpFetcher(DEFAULT_LIMITS).fetch(`${base}/ok`, 5)).toString(), 'hello');
  });

  describe('on a non-2xx status', () => {
    it('throws HttpError with the status', async () => {
      await assert.rejects(new HttpFetcher(DEFAULT_LIMITS).fetch(`${base}/missing`, 10), (e: unknown) => e instanceof HttpError && e.status === 404);
      await assert.rejects(new HttpFetcher(DEFAULT_LIMITS).fetch(`${base}/forbidden`, 10), (e: unknown) => e instanceof HttpError && e.status === 403);
    });
  });

  describe('when Content-Length is above the cap', () => {
    it('throws LengthLimitError before reading the body', async () => {
      await assert.rejects(new HttpFetcher(DEFAULT_LIMITS).fetch(`${base}/ok`, 4), (e: unknown) => e instanceof LengthLimitError && e.limit === 4 && e.received === 5);
    });
  });

  describe('when a body without Content-Length grows past the cap (endless data)', () => {
    it('throws LengthLimitError while streaming', async () => {
      await assert.rejects(new HttpFetcher(DEFAULT_LIMITS).fetch(`${base}/chunked`, 1000), (e: unknown) => e instanceof LengthLimitError && e.limit === 1000 && e.received > 1000);
    });
  });

  describe('when the connection drops mid-body', () => {
    it('throws DownloadError', async () => {
      await assert.rejects(new HttpFetcher(DEFAULT_LIMITS).fetch(`${base}/reset`, 2000), (e: unknown) => e instanceof DownloadError && !(e instanceof HttpError));
    });
  });

  describe('when nothing listens', () => {
    it('wraps the connection error in DownloadError with its cause', async () => {
      const closed = http.createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const port = (closed.address() as AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      await assert.rejects(new HttpFetcher(DEFAULT_LIMITS).fetch(`http://127.0.0.1:${port}/x`, 10), (e: unknown) => e instanceof DownloadError && e.cause instanceof Error);
    });
  });

  describe('on a malformed URL', () => {
    it('throws DownloadError', async () => {
      await assert.rejects(new HttpFetcher(DEFAULT_LIMITS).fetch('not a url', 10), DownloadError);
    });
  });
});
