import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { HttpFetcher, readAll } from './fetcher.ts';
import { RequestAbandonedError } from './errors.ts';
import { DEFAULT_LIMITS } from './config.ts';
import { DeadlineExceededError, DownloadError, HttpError, LengthLimitError } from '@upfleet/core/errors.ts';
import { freePort, listenLoopback, type Loopback } from '../../test/support/loopback.ts';
import { rawHttpServer } from '../../test/support/raw-http-server.ts';
import { until } from '../../test/support/until.ts';

describe('HttpFetcher', () => {
  let server: Loopback;
  let base: string;

  before(async () => {
    server = await listenLoopback(http.createServer((req, res) => {
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
    }));
    base = server.url;
  });

  after(() => server.close());

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
      const port = await freePort();
      await assert.rejects(new HttpFetcher(DEFAULT_LIMITS).fetch(`http://127.0.0.1:${port}/x`, 10), (e: unknown) => e instanceof DownloadError && e.cause instanceof Error);
    });
  });

  describe('on a malformed URL', () => {
    it('throws DownloadError', async () => {
      await assert.rejects(new HttpFetcher(DEFAULT_LIMITS).fetch('not a url', 10), DownloadError);
    });
  });

  describe('when a kept-alive connection was closed by the server while idle', () => {
    it('sends a GET again on a new connection', async () => {
      const server = await staleAfterFirstAnswer();
      try {
        const fetcher = new HttpFetcher(DEFAULT_LIMITS);
        assert.equal(Buffer.from(await fetcher.fetch(`${server.base}/a`, 5)).toString(), 'hello');
        assert.equal(Buffer.from(await fetcher.fetch(`${server.base}/b`, 5)).toString(), 'hello');
        assert.deepEqual(server.requests, ['GET /a', 'GET /b', 'GET /b']);
        assert.equal(server.connections, 2);
      } finally {
        await server.close();
      }
    });

    it('does not send a POST again: it fails with DownloadError', async () => {
      const server = await staleAfterFirstAnswer();
      try {
        const fetcher = new HttpFetcher(DEFAULT_LIMITS);
        assert.equal((await fetcher.post(`${server.base}/a`, '{}', {})).text, 'hello');
        await assert.rejects(fetcher.post(`${server.base}/b`, '{}', {}), (e: unknown) => e instanceof DownloadError && !(e instanceof HttpError));
        assert.deepEqual(server.requests, ['POST /a', 'POST /b']);
        assert.equal(server.connections, 1);
      } finally {
        await server.close();
      }
    });

    it('sends the GET again under the same deadline', async () => {
      const server = await staleAfterFirstAnswer({ silentAfter: 1 });
      try {
        const fetcher = new HttpFetcher({ ...DEFAULT_LIMITS, minBytesPerSecond: 0, requestTimeoutSeconds: 1 });
        await fetcher.fetch(`${server.base}/a`, 5);
        const started = performance.now();
        await assert.rejects(fetcher.fetch(`${server.base}/b`, 5), (e: unknown) => e instanceof DeadlineExceededError && e.deadlineMs === 1000);
        const elapsed = performance.now() - started;
        assert.ok(elapsed >= 990 && elapsed < 1900, `${elapsed} ms`);
        assert.deepEqual(server.requests, ['GET /a', 'GET /b', 'GET /b']);
        assert.equal(server.connections, 2);
      } finally {
        await server.close();
      }
    });
  });

  describe('when its signal aborts', () => {
    it('ends the requests in flight, before and after the head, with RequestAbandonedError, and sends no new one', async () => {
      // /head: never answered; /body: 5 of 10 body bytes, then nothing.
      const server = await rawHttpServer(({ path }, socket) => {
        if (path === '/body') socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello');
      });
      try {
        const abandon = new AbortController();
        const fetcher = new HttpFetcher(DEFAULT_LIMITS, undefined, abandon.signal);
        const head = fetcher.fetch(`${server.base}/head`, 10);
        const body = await fetcher.stream({ url: `${server.base}/body`, maxLength: 10 });
        const reading = readAll(body.body);
        await until('both requests', () => server.requests.length === 2, 1000, 5);
        abandon.abort();
        const abandoned = (e: unknown) => e instanceof RequestAbandonedError && e instanceof DownloadError;
        await assert.rejects(head, abandoned);
        await assert.rejects(reading, abandoned);
        await until('both connections closed', () => server.closed === 2, 1000, 5);
        await assert.rejects(fetcher.post(`${server.base}/post`, '{}', {}), abandoned);
        assert.deepEqual(server.requests, ['GET /head', 'GET /body']);
        assert.equal(server.connections, 2);
      } finally {
        await server.close();
      }
    });
  });

  describe('when a new connection is reset before the answer', () => {
    it('throws DownloadError after one attempt', async () => {
      const server = await staleAfterFirstAnswer({ answerFirst: false });
      try {
        await assert.rejects(new HttpFetcher(DEFAULT_LIMITS).fetch(`${server.base}/a`, 5), (e: unknown) => e instanceof DownloadError && !(e instanceof HttpError));
        assert.deepEqual(server.requests, ['GET /a']);
        assert.equal(server.connections, 1);
      } finally {
        await server.close();
      }
    });
  });
});

/**
 * Answers the first request on each connection (200, keep-alive, unless `answerFirst` is false)
 * and resets the connection on any later one: what a client sees when it writes on a pooled
 * socket the server (or a NAT) has meanwhile closed. Connections after the first `silentAfter`
 * are never answered.
 */
function staleAfterFirstAnswer({ answerFirst = true, silentAfter = Infinity } = {}) {
  return rawHttpServer(({ connection, index }, socket) => {
    if (connection >= silentAfter) return;
    if (index > 0 || !answerFirst) socket.resetAndDestroy();
    else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello');
  });
}
