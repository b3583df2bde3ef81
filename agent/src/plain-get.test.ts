import { describe, it, before, after, mock } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { HttpFetcher, type StreamRequest } from './fetcher.ts';
import { IDLE_MS } from './plain-get.ts';
import { DEFAULT_LIMITS } from './config.ts';
import { DownloadError, HttpError, LengthLimitError, SlowRetrievalError } from '@upfleet/core/errors.ts';
import { listenLoopback, type Loopback } from '../../test/support/loopback.ts';
import { rawHttpServer } from '../../test/support/raw-http-server.ts';

const body = randomBytes((5 << 20) + 333);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Reads a bulk body the way the image download does: each chunk used before the next is asked for. */
async function hashOf(req: StreamRequest, fetcher = new HttpFetcher(DEFAULT_LIMITS)): Promise<{ sha: string; bytes: number; start: number }> {
  const res = await fetcher.stream({ ...req, bulk: true });
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of res.body) {
    h.update(chunk);
    bytes += chunk.byteLength;
  }
  return { sha: h.digest('hex'), bytes, start: res.start };
}

/** A TCP server that answers every connection with `answer` (raw bytes), then closes or stays open. */
async function rawServer(answer: Buffer, close = true): Promise<{ url: string; server: net.Server }> {
  const server = net.createServer((socket) => {
    socket.once('data', () => (close ? socket.end(answer) : socket.write(answer)));
    socket.on('error', () => undefined);
  });
  return { url: `${(await listenLoopback(server)).url}/x`, server };
}

describe('HttpFetcher.stream with bulk (plain-get.ts)', () => {
  let server: Loopback;
  let base: string;
  const seen: string[] = [];

  before(async () => {
    server = await listenLoopback(http.createServer((req, res) => {
      seen.push(String(req.headers['x-token']));
      const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      switch (req.url) {
        case '/image':
          res.writeHead(from ? 206 : 200, { 'content-length': body.length - from }).end(body.subarray(from));
          return;
        case '/chunked': // no Content-Length: node:http reads it instead
          res.writeHead(200);
          res.write(body.subarray(0, 1000));
          setTimeout(() => res.end(body.subarray(1000)), 5);
          return;
        case '/reset':
          res.writeHead(200, { 'content-length': body.length });
          res.write(body.subarray(0, 70_000));
          setTimeout(() => res.socket?.destroy(), 20);
          return;
        case '/slow':
          res.writeHead(200, { 'content-length': body.length });
          res.write(body.subarray(0, 10));
          return;
        default:
          res.writeHead(404).end();
      }
    }));
    base = server.url;
  });

  after(() => server.close());

  it('delivers every byte in order, with the caller headers, from an offset too', async () => {
    const fetcher = new HttpFetcher(DEFAULT_LIMITS, () => ({ 'x-token': 'abc' }));
    assert.deepEqual(await hashOf({ url: `${base}/image`, maxLength: body.length }, fetcher), { sha: sha(body), bytes: body.length, start: 0 });
    assert.equal(seen.at(-1), 'abc');
    assert.deepEqual(await hashOf({ url: `${base}/image`, offset: 4097, maxLength: body.length }), { sha: sha(body.subarray(4097)), bytes: body.length - 4097, start: 4097 });
  });

  it('reads a response without Content-Length through node:http', async () => {
    assert.deepEqual(await hashOf({ url: `${base}/chunked`, maxLength: body.length }), { sha: sha(body), bytes: body.length, start: 0 });
  });

  it('throws HttpError on a non-2xx status, LengthLimitError on a declared length over the cap', async () => {
    await assert.rejects(hashOf({ url: `${base}/missing`, maxLength: 10 }), (e: unknown) => e instanceof HttpError && e.status === 404);
    await assert.rejects(hashOf({ url: `${base}/image`, maxLength: body.length - 1 }), (e: unknown) => e instanceof LengthLimitError && e.received === body.length);
  });

  it('throws DownloadError when the connection drops mid-body', async () => {
    await assert.rejects(hashOf({ url: `${base}/reset`, maxLength: body.length }), (e: unknown) => e instanceof DownloadError && !(e instanceof HttpError));
  });

  it('throws SlowRetrievalError when the body stalls', async () => {
    const fetcher = new HttpFetcher({ ...DEFAULT_LIMITS, minBytesPerSecond: 1000, slowWindowSeconds: 0.2 });
    await assert.rejects(hashOf({ url: `${base}/slow`, maxLength: body.length }, fetcher), SlowRetrievalError);
  });

  it('refuses bytes past the Content-Length, a malformed head, conflicting lengths', async () => {
    for (const [answer, pattern] of [
      ['HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef', /past the Content-Length|more body bytes/],
      ['HTTP/1.1 2OO OK\r\nContent-Length: 3\r\n\r\nabc', /malformed status line/],
      ['HTTP/1.1 200 OK\r\nBad Header: 1\r\nContent-Length: 3\r\n\r\nabc', /malformed response header/],
      ['HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', /conflicting Content-Length/],
    ] as const) {
      const raw = await rawServer(Buffer.from(answer, 'latin1'));
      try {
        await assert.rejects(hashOf({ url: raw.url, maxLength: 100 }), (e: unknown) => e instanceof DownloadError && pattern.test(e.message), answer);
      } finally {
        raw.server.close();
      }
    }
  });

  it('refuses a head larger than node:http allows, unfinished or whole', async () => {
    for (const end of ['\r\n', 'Content-Length: 3\r\n\r\nabc']) {
      const raw = await rawServer(Buffer.from(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(http.maxHeaderSize + 10)}\r\n${end}`), false);
      try {
        await assert.rejects(hashOf({ url: raw.url, maxLength: 100 }), (e: unknown) => e instanceof DownloadError && /response head over/.test(e.message), end);
      } finally {
        raw.server.close();
      }
    }
  });

  it('refuses a header value that would split the request, before connecting', async () => {
    const fetcher = new HttpFetcher(DEFAULT_LIMITS, () => ({ 'x-token': 'a\r\nX-Evil: 1' }));
    await assert.rejects(hashOf({ url: `${base}/image`, maxLength: body.length }, fetcher), DownloadError);
  });

  it('over https (through node:http): verifies the server certificate, and reads the body once it is trusted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'upfleet-bulk-tls-'));
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost']);
    assert.equal(made.status, 0, String(made.stderr));
    const tlsServer = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) },
      (_req, res) => res.writeHead(200, { 'content-length': body.length }).end(body));
    const url = `https://localhost:${(await listenLoopback(tlsServer)).port}/image`;
    try {
      await assert.rejects(hashOf({ url, maxLength: body.length }), (e: unknown) => e instanceof DownloadError && /self[- ]signed/i.test(String((e as Error).message)));
      // Trusted through NODE_EXTRA_CA_CERTS, read only at start: a child process (asynchronous: this process serves it).
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', `
        const { HttpFetcher } = await import(${JSON.stringify(new URL('./fetcher.ts', import.meta.url).href)});
        const { DEFAULT_LIMITS } = await import(${JSON.stringify(new URL('./config.ts', import.meta.url).href)});
        const { createHash } = await import('node:crypto');
        const res = await new HttpFetcher(DEFAULT_LIMITS).stream({ url: ${JSON.stringify(url)}, maxLength: ${body.length}, bulk: true });
        const h = createHash('sha256');
        for await (const chunk of res.body) h.update(chunk);
        console.log(h.digest('hex'));`], { env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem') } });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      await new Promise((r) => child.on('exit', r));
      assert.equal(out.trim(), sha(body), err);
    } finally {
      tlsServer.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const hello = (socket: net.Socket, extra = '') => socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 5\r\n${extra}\r\nhello`);
const text = async (fetcher: HttpFetcher, url: string) => Buffer.from(await fetcher.fetch(url, 100)).toString();
/** Waits for `done`, at most half of IDLE_MS: a connection closed by its idle timer does not count. */
const soon = async (done: () => boolean) => {
  for (const end = performance.now() + IDLE_MS / 2; !done(); await new Promise((r) => setTimeout(r, 5))) {
    if (performance.now() > end) throw new Error('not soon');
  }
};

describe('HttpFetcher.fetch on kept-alive connections (plain-get.ts)', () => {
  it('sends GETs one after another on one connection, and parallel ones on as many, each reused', async () => {
    const server = await rawHttpServer((_request, socket) => hello(socket));
    try {
      const fetcher = new HttpFetcher(DEFAULT_LIMITS);
      for (const path of ['/a', '/b', '/c']) assert.equal(await text(fetcher, `${server.base}${path}`), 'hello');
      assert.equal(server.connections, 1);
      const parallel = () => Promise.all(['/1', '/2', '/3', '/4'].map((p) => text(fetcher, `${server.base}${p}`)));
      assert.deepEqual(await parallel(), ['hello', 'hello', 'hello', 'hello']);
      assert.equal(server.connections, 4);
      assert.deepEqual(await parallel(), ['hello', 'hello', 'hello', 'hello']);
      assert.equal(server.connections, 4);
      assert.equal(server.requests.length, 11);
      assert.equal(server.closed, 0);
    } finally {
      await server.close();
    }
  });

  it('does not reuse a connection after Connection: close, HTTP/1.0, an idle close by the server, or bytes nobody asked for', async () => {
    const answers: Record<string, (socket: net.Socket) => void> = {
      '/close': (socket) => hello(socket, 'Connection: close\r\n'),
      '/http10': (socket) => socket.write('HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello'),
      '/fin': (socket) => {
        hello(socket);
        setTimeout(() => socket.end(), 20);
      },
      '/junk': (socket) => {
        hello(socket);
        setTimeout(() => socket.write('HTTP/1.1 200 OK\r\n'), 20);
      },
    };
    for (const [path, answer] of Object.entries(answers)) {
      const server = await rawHttpServer((request, socket) => (request.path === path ? answer(socket) : hello(socket)));
      try {
        const fetcher = new HttpFetcher(DEFAULT_LIMITS);
        assert.equal(await text(fetcher, `${server.base}${path}`), 'hello', path);
        if (path === '/fin' || path === '/junk') await soon(() => server.closed === 1);
        assert.equal(await text(fetcher, `${server.base}/next`), 'hello', path);
        assert.deepEqual(server.requests, [`GET ${path}`, 'GET /next']);
        assert.equal(server.connections, 2, path);
        await soon(() => server.closed === 1);
      } finally {
        await server.close();
      }
    }
  });

  it('fails a GET whose answer has a byte past its Content-Length, and closes that connection', async () => {
    const server = await rawHttpServer((_request, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello!'));
    try {
      await assert.rejects(text(new HttpFetcher(DEFAULT_LIMITS), `${server.base}/a`), (e: unknown) => e instanceof DownloadError && /more body bytes/.test(e.message));
      await soon(() => server.closed === 1);
    } finally {
      await server.close();
    }
  });

  it('closes an idle connection after IDLE_MS, and does not keep the process alive meanwhile', async () => {
    const server = await rawHttpServer((_request, socket) => hello(socket));
    mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
    try {
      assert.equal(await text(new HttpFetcher(DEFAULT_LIMITS), `${server.base}/a`), 'hello');
      assert.ok(!process.getActiveResourcesInfo().includes('TCPSocketWrap'), String(process.getActiveResourcesInfo()));
      mock.timers.tick(IDLE_MS - 1);
      await new Promise((r) => setImmediate(r));
      assert.equal(server.closed, 0);
      mock.timers.tick(1);
      mock.timers.reset();
      await soon(() => server.closed === 1);
    } finally {
      mock.timers.reset();
      await server.close();
    }
  });
});
