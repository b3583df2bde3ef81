/**
 * GETs over plain http on raw sockets: each connection reads (`onread`) into a
 * buffer of its own, with no node:http parser and no Readable stream per
 * response. Two kinds:
 * - `bulkGet` (an image): its own connection and a 1 MiB buffer; each body chunk
 *   is a view of that buffer, valid until the next one is requested (the socket
 *   is paused while the caller holds it). On loopback this costs the receiving
 *   thread about a third of the CPU per GiB that node:http does (bench/agent.ts),
 *   which leaves that CPU to hashing.
 * - `pooledGet` (metadata, small bodies): a kept-alive connection to the origin,
 *   taken from a pool; each body chunk is a copy, so the socket never waits on
 *   the caller. A cold search through 50 delegated roles takes about a third
 *   less time than through node:http (bench:verify): node:http's parser, agent
 *   and streams run a lot of JavaScript per request, most of it not yet
 *   optimized by V8 in a process that has made only a few hundred requests.
 *
 * Invariants:
 * - Only a response framed by Content-Length (no Transfer-Encoding, not 1xx,
 *   204 or 304) is read here. For any other framing the connection is closed
 *   and the head resolves with `undefined`: the caller repeats the request with
 *   node:http, which handles every framing.
 * - Never more than Content-Length body bytes are taken: a byte past them is a
 *   DownloadError. A body that ends short ends the iteration with `complete`
 *   false (the caller reports it, as for node:http).
 * - The head is at most 16 KiB (node:http's default maxHeaderSize); outgoing header
 *   names and values are checked by node:http's rules before anything is sent.
 * - node:http is not loaded here: a process whose GETs all take this path (the
 *   conformance client's steps) never loads it.
 * - A connection goes back to the pool only when its caller has read a whole
 *   Content-Length body to the end, the answer was HTTP/1.1 without
 *   `Connection: close`, and no byte came after the body. Anything else, and
 *   `destroy` (a guard firing), closes it. One request at a time per connection.
 * - An idle pooled connection does not keep the process alive (unref'd, as
 *   node:http's agent does), closes after IDLE_MS, and leaves the pool when the
 *   peer closes it or sends anything.
 * - `metStaleConnection`: the request failed on a reused connection before any
 *   byte of its answer, as when the peer closed it while idle. A GET may be sent
 *   again on another connection (the caller's rule, fetcher.ts).
 * - http: only. Over TLS, Node's TLSWrap hands every record it decrypts from one socket
 *   read to the read callback in a loop, into the same buffer, whatever a pause asks: a
 *   chunk still held would be overwritten. https goes through node:http.
 */
import net from 'node:net';
import { DownloadError } from '@upfleet/core';

const BULK_BUFFER = 1 << 20;
const POOLED_BUFFER = 64 << 10;
/** Idle connections kept per origin: the updater fetches up to PREFETCH_WINDOW (16) roles at once. */
const MAX_IDLE_PER_ORIGIN = 16;
/** Below node:http servers' default keep-alive timeout (5 s), so a server seldom closes one as a request goes out. */
export const IDLE_MS = 4000;
/** node:http's default maxHeaderSize. */
const MAX_HEAD = 16 << 10;
const HEAD_END = Buffer.from('\r\n\r\n');
/** A header name (RFC 9110 token); a value: no control character but tab (node:http's rules for both). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

export interface PlainResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: PlainBody;
}

/** One GET in flight. */
export interface PlainGet {
  /** The response head, or `undefined` when it is not framed by Content-Length (see the invariants). */
  readonly head: Promise<PlainResponse | undefined>;
  /** Ends the request and closes its connection (a guard firing). */
  destroy(error?: Error): void;
  /** After `head` rejects: see the invariants. */
  readonly metStaleConnection: boolean;
}

/**
 * Sends `GET url` (http:) on a new connection of its own, closed after the response.
 * @throws DownloadError for a URL that is not http: or a header node:http would refuse
 *   (before connecting); `head` rejects with DownloadError for a malformed or
 *   oversized head or a connection closed before it, with the socket's own error (refused, reset) as is.
 */
export function bulkGet(url: URL, headers: Record<string, string>): PlainGet {
  const text = requestText(url, headers, true);
  return new Exchange(new Connection(url, BULK_BUFFER, false), url, text, false);
}

/** Sends `GET url` (http:) on an idle kept-alive connection to its origin, or a new one. @throws as `bulkGet`. */
export function pooledGet(url: URL, headers: Record<string, string>): PlainGet {
  const text = requestText(url, headers, false);
  return new Exchange(takeIdle(url.host) ?? new Connection(url, POOLED_BUFFER, true), url, text, true);
}

/** An idle connection to `origin` still open (one its timer or peer just closed may not have left yet). */
function takeIdle(origin: string): Connection | undefined {
  for (let c = IDLE.get(origin)?.at(-1); c; c = IDLE.get(origin)?.at(-1)) {
    c.leavePool();
    if (!c.socket.destroyed) return c;
  }
  return undefined;
}

function requestText(url: URL, headers: Record<string, string>, close: boolean): string {
  if (url.protocol !== 'http:') throw new DownloadError(`${url.href}: plain GETs are for http: only`);
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`];
  if (close) lines.push('Connection: close');
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) throw new DownloadError(`GET ${url.href}: header ${JSON.stringify(name)} is not a valid HTTP header`);
    lines.push(`${name}: ${value}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** Idle pooled connections by origin (`host:port`), most recently used last. */
const IDLE = new Map<string, Connection[]>();

class Connection {
  readonly socket: net.Socket;
  /** The exchange being answered; undefined while idle. */
  exchange: Exchange | undefined;
  /** Responses it carried in full: above 0, a request on it is a reuse. */
  answered = 0;
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly url: URL,
    bufferSize: number,
    readonly pooled: boolean,
  ) {
    const buffer = Buffer.allocUnsafe(bufferSize);
    const onread = { buffer, callback: (n: number) => this.#onRead(buffer, n) };
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.socket = net.connect({ host, port: Number(url.port || 80), onread, noDelay: true });
    this.socket.on('error', (e) => this.exchange?.fail(e));
    this.socket.on('close', () => {
      this.leavePool();
      this.exchange?.closed();
    });
  }

  /** Returning false pauses the socket (see PlainBody). */
  #onRead(buffer: Buffer, n: number): boolean {
    if (this.exchange) return this.exchange.onRead(buffer, n);
    this.socket.destroy(); // bytes nobody asked for
    return false;
  }

  /** The caller read `exchange`'s whole body: back to the pool, or closed. */
  finished(exchange: Exchange, reusable: boolean): void {
    if (this.exchange !== exchange) return;
    this.exchange = undefined;
    const idle = IDLE.get(this.url.host) ?? [];
    if (!this.pooled || !reusable || this.socket.destroyed || idle.length >= MAX_IDLE_PER_ORIGIN) {
      this.socket.destroy();
      return;
    }
    this.answered++;
    idle.push(this);
    IDLE.set(this.url.host, idle);
    this.socket.unref();
    this.#idleTimer = setTimeout(() => this.socket.destroy(), IDLE_MS).unref();
  }

  /** Taken from the pool for `exchange`. */
  assign(exchange: Exchange): void {
    this.leavePool();
    this.socket.ref();
    this.exchange = exchange;
  }

  leavePool(): void {
    clearTimeout(this.#idleTimer);
    const idle = IDLE.get(this.url.host);
    const at = idle?.indexOf(this) ?? -1;
    if (at >= 0) idle!.splice(at, 1);
    if (idle?.length === 0) IDLE.delete(this.url.host);
  }
}

class Exchange implements PlainGet {
  readonly head: Promise<PlainResponse | undefined>;
  readonly body: PlainBody;
  readonly #reused: boolean;
  #settleHead!: { resolve(r: PlainResponse | undefined): void; reject(e: unknown): void };
  #headParts: Buffer[] = [];
  #headBytes = 0;
  #headDone = false;
  /** The answer allows another request on the connection. */
  #keepAlive = false;
  /** Body bytes still to come. */
  remaining = 0;

  constructor(
    readonly connection: Connection,
    readonly url: URL,
    text: string,
    copyChunks: boolean,
  ) {
    this.#reused = connection.answered > 0;
    this.body = new PlainBody(this, copyChunks);
    this.head = new Promise((resolve, reject) => (this.#settleHead = { resolve, reject }));
    connection.assign(this);
    connection.socket.write(text);
  }

  get metStaleConnection(): boolean {
    return this.#reused && this.#headBytes === 0;
  }

  destroy(error?: Error): void {
    if (error) this.fail(error);
    this.#close();
  }

  onRead(buffer: Buffer, n: number): boolean {
    if (this.#headDone) return this.body.deliver(buffer.subarray(0, n));
    const previous = this.#headBytes;
    this.#headParts.push(Buffer.from(buffer.subarray(0, n)));
    this.#headBytes += n;
    const sofar = Buffer.concat(this.#headParts);
    const end = sofar.indexOf(HEAD_END, Math.max(0, previous - 3));
    if (end < 0) {
      if (this.#headBytes > MAX_HEAD) this.fail(new DownloadError(`GET ${this.url.href}: response head over ${MAX_HEAD} bytes`));
      return true;
    }
    this.#headDone = true;
    this.#headParts = [];
    if (end > MAX_HEAD) {
      this.fail(new DownloadError(`GET ${this.url.href}: response head over ${MAX_HEAD} bytes`));
      return false;
    }
    let response: PlainResponse | undefined;
    try {
      response = this.#parseHead(sofar.subarray(0, end).toString('latin1'));
    } catch (e) {
      this.fail(e);
      return false;
    }
    if (!response) {
      this.#close();
      this.#settleHead.resolve(undefined);
      return false;
    }
    this.#settleHead.resolve(response);
    // The body's first bytes came with the head, at this offset in the read buffer.
    const bodyStart = end + HEAD_END.length - previous;
    return this.body.deliver(buffer.subarray(Math.min(bodyStart, n), n));
  }

  #parseHead(text: string): PlainResponse | undefined {
    const [statusLine, ...lines] = text.split('\r\n');
    const status = /^HTTP\/1\.([01]) (\d{3})(?: [^\r\n]*)?$/.exec(statusLine!);
    if (!status) throw new DownloadError(`GET ${this.url.href}: malformed status line`);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).toLowerCase();
      if (colon <= 0 || !TOKEN.test(name)) throw new DownloadError(`GET ${this.url.href}: malformed response header`);
      const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
      if (name === 'content-length' && headers[name] !== undefined && headers[name] !== value) {
        throw new DownloadError(`GET ${this.url.href}: conflicting Content-Length headers`);
      }
      headers[name] = headers[name] === undefined || name === 'content-length' ? value : `${headers[name]}, ${value}`;
    }
    const code = Number(status[2]);
    const length = headers['content-length'];
    if (code < 200 || code === 204 || code === 304 || headers['transfer-encoding'] !== undefined || !/^\d{1,15}$/.test(length ?? '')) {
      return undefined;
    }
    this.#keepAlive = status[1] === '1' && !/(^|,)\s*close\s*(,|$)/i.test(headers.connection ?? '');
    this.remaining = Number(length);
    return { status: code, headers, body: this.body };
  }

  /** The connection closed: before the head, a failure; after it, the body ends (complete or short). */
  closed(): void {
    if (this.#headDone) this.body.end();
    else this.fail(new DownloadError(`GET ${this.url.href}: connection closed before the response head`));
  }

  fail(error: unknown): void {
    this.#settleHead.reject(error);
    this.body.fail(error);
    this.#close();
  }

  /** The caller has read the body to its end. */
  done(): void {
    this.connection.finished(this, this.#keepAlive && this.remaining === 0);
  }

  resume(): void {
    if (this.connection.exchange === this) this.connection.socket.resume();
  }

  #close(): void {
    if (this.connection.exchange === this) this.connection.socket.destroy();
  }
}

/**
 * A response body, handed out one chunk at a time: views of the read buffer
 * (the socket pauses until the caller asks for the next), or copies (it never pauses).
 */
export class PlainBody implements AsyncIterable<Uint8Array> {
  readonly #chunks: Uint8Array[] = [];
  #held = false;
  #waiter: { resolve(r: IteratorResult<Uint8Array>): void; reject(e: unknown): void } | undefined;
  #error: unknown;
  #closed = false;
  #done = false;

  constructor(
    private readonly exchange: Exchange,
    private readonly copyChunks: boolean,
  ) {}

  /** Every Content-Length byte arrived. */
  get complete(): boolean {
    return this.exchange.remaining === 0 && this.#error === undefined;
  }

  destroy(): void {
    this.#closed = true;
    this.exchange.destroy();
    this.#settle();
  }

  /** From the read callback: keeps the chunk until it is taken; false pauses the socket. */
  deliver(chunk: Uint8Array): boolean {
    if (chunk.byteLength === 0) {
      if (this.exchange.remaining === 0) this.end();
      return true;
    }
    if (chunk.byteLength > this.exchange.remaining) {
      this.exchange.fail(new DownloadError('more body bytes than the Content-Length'));
      return false;
    }
    this.exchange.remaining -= chunk.byteLength;
    this.#chunks.push(this.copyChunks ? Buffer.from(chunk) : chunk);
    if (this.exchange.remaining === 0) this.#closed = true;
    this.#settle();
    return this.copyChunks;
  }

  /** The connection closed, or the body is whole: the iteration ends after the chunks held. */
  end(): void {
    this.#closed = true;
    this.#settle();
  }

  fail(error: unknown): void {
    if (this.#closed && this.exchange.remaining === 0) return; // whole already: a later failure is the connection's
    this.#error ??= error;
    this.#closed = true;
    this.#settle();
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: () => {
        if (this.#held) {
          // The caller is done with the previous view: the read buffer is free again.
          this.#held = false;
          if (!this.#closed) this.exchange.resume();
        }
        return new Promise((resolve, reject) => {
          this.#waiter = { resolve, reject };
          this.#settle();
        });
      },
      return: async () => {
        if (!this.#done) this.destroy();
        return { done: true, value: undefined };
      },
    };
  }

  #settle(): void {
    const waiter = this.#waiter;
    if (!waiter) return;
    if (this.#chunks.length > 0) {
      this.#waiter = undefined;
      this.#held = !this.copyChunks;
      waiter.resolve({ done: false, value: this.#chunks.shift()! });
    } else if (this.#error !== undefined) {
      this.#waiter = undefined;
      waiter.reject(this.#error);
    } else if (this.#closed) {
      this.#waiter = undefined;
      this.#done = true;
      this.exchange.done();
      waiter.resolve({ done: true, value: undefined });
    }
  }
}
