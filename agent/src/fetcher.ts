/**
 * The agent's one HTTP transport (streaming: raw sockets for plain-http GETs,
 * node:http/https otherwise). Every request the agent makes goes through
 * `exchange`: metadata and image GETs (HttpFetcher `stream`/`fetch`) and the
 * director POSTs (`post`: registration, manifests, progress events), so each
 * has the same guards against endless data and slow
 * retrieval (TUF 1.0.x, "the client's threat model"; Uptane 2.1.0, 5.4.4).
 *
 * Invariants:
 * - Never more than the cap is read: a body past `maxLength`, or a declared
 *   Content-Length past it, aborts the request with LengthLimitError. Director
 *   answers are capped at `maxResponseBytes`.
 * - A response slower than `minBytesPerSecond`, averaged over each window of
 *   `slowWindowSeconds` (the wait for the headers included), aborts with
 *   SlowRetrievalError.
 * - A request not complete (headers and whole body) within its deadline aborts
 *   with DeadlineExceededError (a SlowRetrievalError). The deadline is
 *   `requestTimeoutSeconds`, plus, for a GET, the time its `maxLength` (a signed
 *   length, or the cap) takes at the minimum rate: a download that keeps the
 *   minimum rate is never cut, and none outlasts its length at that rate. The
 *   director's answers are small: a POST has `requestTimeoutSeconds` alone.
 * - Anything the transport throws becomes a DownloadError (HttpError for a
 *   non-2xx GET); remote content problems are the caller's to judge.
 * - When a guard fires, the socket is destroyed and the timers stop: nothing
 *   keeps reading in the background.
 * - A GET over plain http goes out on a raw socket (plain-get.ts), under the same
 *   guards: a `bulk` one (an image) on its own connection, reading into one reused
 *   buffer; any other on a kept-alive connection from plain-get's pool. A response
 *   that path does not read (no Content-Length framing) is requested again through
 *   node:http, as are every https GET and every POST.
 * - Both pools (plain-get's, node:http's agent) keep idle connections for reuse, and
 *   servers, proxies and NATs close idle connections while the agent is busy or
 *   asleep. A GET sent on a reused connection that fails (reset, EPIPE, aborted,
 *   closed) before any response byte is sent again on another connection, as Go's
 *   net/http and undici do: that connection is dropped, so each stale one fails a
 *   request at most once, and at most MAX_STALE_SOCKETS resends are made. A failure
 *   on a new connection is final. The resend runs under the request's guard and
 *   deadline. A POST is never resent.
 * - Once the fetcher's `signal` aborts (the agent abandoning its cycle), every
 *   request in flight ends and every new one fails, with RequestAbandonedError.
 */
import type http from 'node:http';
import { DeadlineExceededError, DownloadError, HttpError, LengthLimitError, SlowRetrievalError } from '@upfleet/core';
import { bulkGet, pooledGet } from './plain-get.ts';
import type { Limits } from './config.ts';
import { RequestAbandonedError } from './errors.ts';
import { RELEASE_EVERY_BYTES, ReceiveBufferReleaser } from './gc-pressure.ts';

export type TransportLimits = Pick<Limits, 'minBytesPerSecond' | 'slowWindowSeconds' | 'requestTimeoutSeconds' | 'maxResponseBytes'>;

export type HeaderSource = (url: string) => Record<string, string>;

export interface ExchangeRequest {
  method: 'GET' | 'POST';
  url: string;
  headers?: Record<string, string>;
  body?: string;
  /** Cap on the response body. */
  maxLength: number;
  /** Time allowed for the whole exchange, from the request to the last body byte. */
  deadlineMs: number;
  /** A large GET body: see StreamRequest.bulk. */
  bulk?: boolean;
  /** Ends the exchange (RequestAbandonedError) when it aborts. */
  signal?: AbortSignal;
}

export interface ExchangeResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body, capped and guarded; read it to the end, or call `discard`. */
  body: AsyncIterable<Uint8Array>;
  discard(): void;
}

export interface StreamRequest {
  url: string;
  /** Request bytes from this offset on (Range); the response says whether the server honoured it. */
  offset?: number;
  maxLength: number;
  /**
   * A large body (an image): over plain http, read on its own connection into one
   * reused buffer (plain-get.ts). Each chunk is valid only until the next one is requested.
   */
  bulk?: boolean;
}

export interface StreamResponse {
  /** The offset the body starts at: the requested one on 206, 0 on 200. */
  start: number;
  /** The body, capped and speed-guarded. */
  body: AsyncIterable<Uint8Array>;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

interface NodeTransport {
  request(url: URL, options: http.RequestOptions): http.ClientRequest;
  agent: http.Agent;
}

/**
 * node:http or node:https with its kept-alive agent, loaded at its first request and kept.
 * node:https (and node:tls under it) costs about 1 MB of idle RSS for a device whose
 * repositories are plain http (behind a TLS-terminating gateway); node:http is not needed
 * while plain-get.ts takes every request, so a conformance step whose GETs all go that way
 * saves its nine modules (2-3 ms).
 */
const transports = new Map<'http:' | 'https:', Promise<NodeTransport>>();
function nodeTransport(protocol: 'http:' | 'https:'): Promise<NodeTransport> {
  let transport = transports.get(protocol);
  if (!transport) {
    transport = (protocol === 'https:' ? import('node:https') : import('node:http')).then(({ default: m }) => ({
      request: m.request,
      agent: new m.Agent({ keepAlive: true }),
    }));
    transports.set(protocol, transport);
  }
  return transport;
}

/**
 * One guarded HTTP request: resolves with the status and a capped body stream.
 * @throws DownloadError for transport failures (not a URL, refused, reset),
 *   LengthLimitError for a declared length over the cap, SlowRetrievalError /
 *   DeadlineExceededError before the headers; the body throws the same while streaming.
 */
export async function exchange(req: ExchangeRequest, limits: TransportLimits): Promise<ExchangeResponse> {
  let url: URL;
  try {
    url = new URL(req.url);
  } catch (cause) {
    throw new DownloadError(`${req.url}: not a URL`, { cause });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new DownloadError(`${req.url}: not an http(s) URL`);
  const headers: Record<string, string> = { ...req.headers };
  if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body));
  const guard = new RequestGuard(req.url, limits, req.deadlineMs, req.signal);
  if (guard.error) throw guard.error; // abandoned already: nothing is sent
  let res: ResponseStart;
  try {
    const plain = req.method === 'GET' && url.protocol === 'http:';
    res = (plain ? await plainStart(url, headers, req.bulk ?? false, guard) : undefined) ?? (await nodeHttpStart(url, req, headers, guard));
  } catch (cause) {
    guard.stop();
    throw guard.error ?? (cause instanceof DownloadError ? cause : new DownloadError(`${req.method} ${req.url}: ${(cause as Error).message}`, { cause }));
  }
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > req.maxLength) {
    guard.stop();
    res.body.destroy();
    throw new LengthLimitError(req.url, req.maxLength, declared);
  }
  return {
    status: res.status,
    headers: res.headers,
    body: guarded(res.body, req, guard, res.releaser),
    discard: () => {
      guard.stop();
      res.body.destroy();
    },
  };
}

/** What a body is read from: node:http's IncomingMessage or plain-get's PlainBody. */
interface BodySource extends AsyncIterable<Uint8Array> {
  /** The whole body arrived. */
  readonly complete: boolean;
  destroy(): void;
}

interface ResponseStart {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: BodySource;
  /** For a body read in fresh buffers (node:http): bounds the dead ones awaiting collection (gc-pressure.ts). */
  releaser?: ReceiveBufferReleaser;
}

/** Stale pooled sockets one GET may meet in a row before its failure is final (each is dropped after one failure). */
const MAX_STALE_SOCKETS = 4;

/** A plain-http GET on a raw socket; undefined when node:http must read the answer (plain-get.ts). */
async function plainStart(url: URL, headers: Record<string, string>, bulk: boolean, guard: RequestGuard): Promise<ResponseStart | undefined> {
  for (let resends = 0; ; resends++) {
    const get = bulk ? bulkGet(url, headers) : pooledGet(url, headers);
    guard.cancels(get);
    try {
      return await get.head;
    } catch (cause) {
      if (resends === MAX_STALE_SOCKETS || guard.error || !get.metStaleConnection) throw cause;
    }
  }
}

/** How a connection the peer has closed fails a request written on it. */
const CLOSED_CONNECTION_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

async function nodeHttpStart(url: URL, req: ExchangeRequest, headers: Record<string, string>, guard: RequestGuard): Promise<ResponseStart> {
  for (let resends = 0; ; resends++) {
    const attempt = await sendOnce(url, req, headers, guard);
    try {
      const res = await attempt.response;
      return { status: res.statusCode ?? 0, headers: res.headers, body: res, releaser: new ReceiveBufferReleaser(RELEASE_EVERY_BYTES) };
    } catch (cause) {
      // Only a GET is resent: a POST (a manifest carries counters, an event is recorded once)
      // may have reached the director before the reset, and must not be applied twice.
      if (req.method !== 'GET' || resends === MAX_STALE_SOCKETS || guard.error || !attempt.metStaleSocket(cause)) throw cause;
    }
  }
}

interface Attempt {
  response: Promise<http.IncomingMessage>;
  /** `cause` says the request met a reused connection the peer had closed (it answered nothing): most likely closed while idle. */
  metStaleSocket(cause: unknown): boolean;
}

async function sendOnce(url: URL, req: ExchangeRequest, headers: Record<string, string>, guard: RequestGuard): Promise<Attempt> {
  const { request: send, agent } = await nodeTransport(url.protocol === 'https:' ? 'https:' : 'http:');
  const request = send(url, { method: req.method, headers, agent });
  guard.cancels(request);
  // A reused socket carries the bytes of earlier responses: only bytes read after it was assigned count.
  let socket: { bytesRead: number } | undefined;
  let readBefore = 0;
  request.once('socket', (s) => {
    socket = s;
    readBefore = s.bytesRead;
  });
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    request.once('response', resolve);
    request.once('error', reject);
    request.end(req.body);
  });
  // Later failures surface on the response stream (or were this attempt's): this keeps a second request error from going unhandled.
  request.on('error', () => undefined);
  return {
    response,
    metStaleSocket: (cause) =>
      request.reusedSocket && socket !== undefined && socket.bytesRead === readBefore &&
      CLOSED_CONNECTION_CODES.has((cause as NodeJS.ErrnoException).code ?? ''),
  };
}

/** Reads a guarded body to the end. */
export async function readAll(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
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

export class HttpFetcher {
  constructor(
    private readonly limits: TransportLimits,
    private readonly headers: HeaderSource = () => ({}),
    /** Aborting it ends every request of this fetcher, in flight or to come. */
    private readonly signal?: AbortSignal,
  ) {}

  /**
   * Opens a GET and streams the body.
   * @throws HttpError for a non-2xx status, DownloadError for transport failures,
   *   LengthLimitError / SlowRetrievalError (DeadlineExceededError) before or while streaming.
   */
  async stream(req: StreamRequest): Promise<StreamResponse> {
    const headers: Record<string, string> = { ...this.headers(req.url) };
    if (req.offset) headers.range = `bytes=${req.offset}-`;
    const res = await exchange(
      { method: 'GET', url: req.url, headers, maxLength: req.maxLength, deadlineMs: this.#deadlineMs(req.maxLength), bulk: req.bulk, signal: this.signal },
      this.limits,
    );
    if (res.status < 200 || res.status > 299) {
      res.discard();
      throw new HttpError(req.url, res.status);
    }
    return { start: res.status === 206 && req.offset ? req.offset : 0, body: res.body };
  }

  /**
   * The whole body, at most `maxLength` bytes (the updater's Fetcher contract).
   * @throws as `stream`.
   */
  async fetch(url: string, maxLength: number): Promise<Uint8Array> {
    const { body } = await this.stream({ url, maxLength });
    return readAll(body);
  }

  /**
   * A small JSON POST (not the global fetch: undici costs the idle daemon several
   * MB). Resolves with any status and an answer of at most `maxResponseBytes`.
   * @throws DownloadError for transport failures, LengthLimitError,
   *   SlowRetrievalError (DeadlineExceededError).
   */
  async post(url: string, body: string, headers: Record<string, string>): Promise<{ status: number; text: string }> {
    const res = await exchange(
      {
        method: 'POST', url, body, headers: { 'content-type': 'application/json', ...this.headers(url), ...headers },
        maxLength: this.limits.maxResponseBytes, deadlineMs: this.#deadlineMs(0), signal: this.signal,
      },
      this.limits,
    );
    return { status: res.status, text: Buffer.from(await readAll(res.body)).toString('utf8') };
  }

  /** The fixed deadline, plus the time `bytes` take at the minimum rate. */
  #deadlineMs(bytes: number): number {
    const { requestTimeoutSeconds, minBytesPerSecond } = this.limits;
    return (requestTimeoutSeconds + (minBytesPerSecond > 0 ? bytes / minBytesPerSecond : 0)) * 1000;
  }
}

async function* guarded(res: BodySource, req: ExchangeRequest, guard: RequestGuard, releaser?: ReceiveBufferReleaser): AsyncIterable<Uint8Array> {
  try {
    for await (const chunk of res) {
      guard.count(chunk.byteLength);
      releaser?.received(chunk.byteLength);
      if (guard.received > req.maxLength) throw new LengthLimitError(req.url, req.maxLength, guard.received);
      yield chunk;
    }
    if (!res.complete) throw new DownloadError(`${req.method} ${req.url}: connection closed after ${guard.received} bytes`);
  } catch (cause) {
    if (guard.error) throw guard.error;
    if (cause instanceof DownloadError) throw cause;
    throw new DownloadError(`${req.method} ${req.url}: ${(cause as Error).message}`, { cause });
  } finally {
    guard.stop();
    if (!res.complete) res.destroy();
  }
}

/**
 * Aborts a request whose average rate over a window falls below the minimum,
 * that is not done by its deadline, or whose `signal` aborts. Started with the
 * request, so a server that never answers is caught too.
 */
class RequestGuard {
  error: SlowRetrievalError | RequestAbandonedError | undefined;
  received = 0;
  #windowBytes = 0;
  #window: NodeJS.Timeout | undefined;
  #deadline: NodeJS.Timeout | undefined;
  /** The connections a firing guard destroys. */
  readonly #connections: Array<{ destroy(error?: Error): unknown }> = [];
  readonly #signal: AbortSignal | undefined;
  readonly #abandon = () => this.#fail(new RequestAbandonedError(this.url));

  constructor(
    private readonly url: string,
    limits: TransportLimits,
    deadlineMs: number,
    signal?: AbortSignal,
  ) {
    if (limits.minBytesPerSecond > 0) {
      this.#window = setInterval(() => {
        const rate = this.#windowBytes / limits.slowWindowSeconds;
        this.#windowBytes = 0;
        if (rate < limits.minBytesPerSecond) this.#fail(new SlowRetrievalError(url, rate, limits.minBytesPerSecond));
      }, limits.slowWindowSeconds * 1000);
      this.#window.unref();
    }
    // setTimeout holds at most 2^31-1 ms (24.8 days; an 8 GiB image at 1 KiB/s needs more): past it, a retry resumes.
    this.#deadline = setTimeout(() => this.#fail(new DeadlineExceededError(this.url, deadlineMs, this.received)), Math.min(deadlineMs, MAX_TIMER_MS));
    this.#deadline.unref();
    this.#signal = signal;
    if (signal?.aborted) this.#abandon();
    else signal?.addEventListener('abort', this.#abandon, { once: true });
  }

  /** From now on a firing guard destroys `connection` too (with its error). */
  cancels(connection: { destroy(error?: Error): unknown }): void {
    this.#connections.push(connection);
    if (this.error) connection.destroy(this.error);
  }

  count(n: number): void {
    this.received += n;
    this.#windowBytes += n;
  }

  stop(): void {
    clearInterval(this.#window);
    clearTimeout(this.#deadline);
    this.#window = this.#deadline = undefined;
    // The signal lives as long as the agent: a listener per finished request would pile up.
    this.#signal?.removeEventListener('abort', this.#abandon);
  }

  #fail(error: SlowRetrievalError | RequestAbandonedError): void {
    this.error = error;
    this.stop();
    for (const c of this.#connections) c.destroy(error);
  }
}
