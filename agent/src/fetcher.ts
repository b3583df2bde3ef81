/**
 * HTTP transport for metadata and images (node:http/https, streaming).
 *
 * Invariants:
 * - Never more than the cap is read: a body past `maxLength` aborts the request
 *   with LengthLimitError (endless-data defence).
 * - A response slower than `minBytesPerSecond`, averaged over each window of
 *   `slowWindowSeconds` (headers included), aborts with SlowRetrievalError.
 * - Anything the transport throws becomes a DownloadError (HttpError for a
 *   non-2xx status); remote content problems are the caller's to judge.
 */
import http from 'node:http';
import https from 'node:https';
import { DownloadError, HttpError, LengthLimitError, SlowRetrievalError } from '@upfleet/core';

export interface TransportLimits {
  minBytesPerSecond: number;
  slowWindowSeconds: number;
}

export type HeaderSource = (url: string) => Record<string, string>;

export interface StreamRequest {
  url: string;
  /** Request bytes from this offset on (Range); the response says whether the server honoured it. */
  offset?: number;
  maxLength: number;
}

export interface StreamResponse {
  /** The offset the body starts at: the requested one on 206, 0 on 200. */
  start: number;
  /** The body, capped and speed-guarded. */
  body: AsyncIterable<Uint8Array>;
}

const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

export class HttpFetcher {
  constructor(
    private readonly limits: TransportLimits,
    private readonly headers: HeaderSource = () => ({}),
  ) {}

  /**
   * Opens a GET and streams the body.
   * @throws HttpError for a non-2xx status, DownloadError for transport failures,
   *   LengthLimitError / SlowRetrievalError while streaming.
   */
  async stream(req: StreamRequest): Promise<StreamResponse> {
    let url: URL;
    try {
      url = new URL(req.url);
    } catch (cause) {
      throw new DownloadError(`${req.url}: not a URL`, { cause });
    }
    const mod = url.protocol === 'https:' ? https : http;
    const headers: Record<string, string> = { ...this.headers(req.url) };
    if (req.offset) headers.range = `bytes=${req.offset}-`;
    const guard = new SpeedGuard(req.url, this.limits);
    const request = mod.request(url, { method: 'GET', headers, agent: url.protocol === 'https:' ? agents.https : agents.http });
    guard.start(request);
    let res: http.IncomingMessage;
    try {
      res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        request.once('response', resolve);
        request.once('error', reject);
        request.end();
      });
    } catch (cause) {
      guard.stop();
      throw guard.error ?? new DownloadError(`GET ${req.url}: ${(cause as Error).message}`, { cause });
    }
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) {
      guard.stop();
      res.resume();
      throw new HttpError(req.url, status);
    }
    const start = status === 206 && req.offset ? req.offset : 0;
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > req.maxLength) {
      guard.stop();
      res.destroy();
      throw new LengthLimitError(req.url, req.maxLength, declared);
    }
    return { start, body: capped(res, req, guard) };
  }

  /**
   * The whole body, at most `maxLength` bytes (the updater's Fetcher contract).
   * @throws as `stream`.
   */
  async fetch(url: string, maxLength: number): Promise<Uint8Array> {
    const { body } = await this.stream({ url, maxLength });
    const parts: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of body) {
      parts.push(chunk);
      total += chunk.byteLength;
    }
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.byteLength;
    }
    return out;
  }
}

async function* capped(res: http.IncomingMessage, req: StreamRequest, guard: SpeedGuard): AsyncIterable<Uint8Array> {
  let received = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      received += chunk.byteLength;
      guard.count(chunk.byteLength);
      if (received > req.maxLength) throw new LengthLimitError(req.url, req.maxLength, received);
      yield chunk;
    }
    if (!res.complete) throw new DownloadError(`GET ${req.url}: connection closed after ${received} bytes`);
  } catch (cause) {
    if (guard.error) throw guard.error;
    if (cause instanceof DownloadError) throw cause;
    throw new DownloadError(`GET ${req.url}: ${(cause as Error).message}`, { cause });
  } finally {
    guard.stop();
    if (!res.complete) res.destroy();
  }
}

/** Aborts a request whose average rate over a window falls below the minimum. */
class SpeedGuard {
  error: SlowRetrievalError | undefined;
  #timer: NodeJS.Timeout | undefined;
  #bytes = 0;

  constructor(
    private readonly url: string,
    private readonly limits: TransportLimits,
  ) {}

  start(request: http.ClientRequest): void {
    if (this.limits.minBytesPerSecond <= 0) return;
    const windowMs = this.limits.slowWindowSeconds * 1000;
    this.#timer = setInterval(() => {
      const rate = this.#bytes / this.limits.slowWindowSeconds;
      this.#bytes = 0;
      if (rate < this.limits.minBytesPerSecond) {
        this.error = new SlowRetrievalError(this.url, rate, this.limits.minBytesPerSecond);
        this.stop();
        request.destroy(this.error);
      }
    }, windowMs);
    this.#timer.unref();
  }

  count(n: number): void {
    this.#bytes += n;
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * A small JSON POST over node:http(s) (not the global fetch: undici costs the
 * idle daemon several MB). Resolves with any status; rejects on transport errors.
 */
export function httpPost(url: string, body: string, headers: Record<string, string>, timeoutMs = 30_000): Promise<{ status: number; text: string }> {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(u, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
      agent: u.protocol === 'https:' ? agents.https : agents.http,
      timeout: timeoutMs,
    });
    req.once('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.once('error', reject);
    req.once('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.once('error', reject);
      res.once('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') }));
    });
    req.end(body);
  });
}
