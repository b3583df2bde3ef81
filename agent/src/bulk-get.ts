/**
 * A plain-http GET whose body is large (an image), on its own connection: the socket reads
 * (`onread`) straight into one reused 1 MiB buffer, so the body reaches the
 * caller in chunks of up to 1 MiB with no buffer allocated per read and no copy
 * by node:http's parser. On loopback this costs the receiving thread about a
 * third of the CPU per GiB that node:http does (bench/agent.ts), which leaves
 * that CPU to hashing.
 *
 * Invariants:
 * - Only a response framed by Content-Length (no Transfer-Encoding, not 1xx,
 *   204 or 304) is read here. For any other framing `bulkGet` closes the
 *   connection and resolves with `undefined`: the caller repeats the request
 *   with node:http, which handles every framing.
 * - A chunk is valid until the next one is requested: the socket is paused
 *   while the caller holds a chunk, so no read can overwrite it.
 * - Never more than Content-Length body bytes are taken: a byte past them is a
 *   DownloadError. A body that ends short ends the iteration with `complete`
 *   false (the caller reports it, as for node:http).
 * - The head is at most node:http's maxHeaderSize bytes; outgoing header names
 *   and values pass node:http's own validators before anything is sent.
 * - http: only. Over TLS, Node's TLSWrap hands every record it decrypts from one socket
 *   read to the read callback in a loop, into the same buffer, whatever a pause asks: a
 *   chunk still held would be overwritten. https bodies go through node:http.
 */
import { maxHeaderSize, validateHeaderName, validateHeaderValue } from 'node:http';
import net from 'node:net';
import { DownloadError } from '@upfleet/core';

const READ_BUFFER = 1 << 20;
const HEAD_END = Buffer.from('\r\n\r\n');
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export interface BulkResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: BulkBody;
}

/**
 * Sends `GET url` (http:) on a new connection and resolves with the response head, or with
 * `undefined` (connection closed) when the response is not framed by Content-Length.
 * `onSocket` receives the socket at once, so the caller's guards can destroy it.
 * @throws DownloadError for a malformed or oversized head, a connection closed before
 *   it; the socket's own error (refused, reset, a guard's) as is.
 */
export async function bulkGet(url: URL, headers: Record<string, string>, onSocket: (socket: net.Socket) => void): Promise<BulkResponse | undefined> {
  if (url.protocol !== 'http:') throw new DownloadError(`${url.href}: bulk-get reads plain http only`);
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`, 'Connection: close'];
  for (const [name, value] of Object.entries(headers)) {
    validateHeaderName(name);
    validateHeaderValue(name, value);
    lines.push(`${name}: ${value}`);
  }
  const connection = new BulkConnection(url);
  onSocket(connection.socket);
  connection.socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  return connection.head;
}

class BulkConnection {
  readonly socket: net.Socket;
  readonly head: Promise<BulkResponse | undefined>;
  readonly body = new BulkBody(this);
  #settleHead!: { resolve(r: BulkResponse | undefined): void; reject(e: unknown): void };
  #headParts: Buffer[] = [];
  #headBytes = 0;
  #headDone = false;
  /** Body bytes still to come. */
  remaining = 0;

  constructor(private readonly url: URL) {
    this.head = new Promise((resolve, reject) => (this.#settleHead = { resolve, reject }));
    const buffer = Buffer.allocUnsafe(READ_BUFFER);
    const onread = { buffer, callback: (n: number) => this.#onRead(buffer, n) };
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.socket = net.connect({ host, port: Number(url.port || 80), onread });
    this.socket.on('error', (e) => this.#fail(e));
    this.socket.on('close', () => {
      if (this.#headDone) this.body.end();
      else this.#fail(new DownloadError(`GET ${url.href}: connection closed before the response head`));
    });
  }

  /** Returning false pauses the socket until the body hands the chunk back (`resume`). */
  #onRead(buffer: Buffer, n: number): boolean {
    if (this.#headDone) return this.body.deliver(buffer.subarray(0, n));
    const previous = this.#headBytes;
    this.#headParts.push(Buffer.from(buffer.subarray(0, n)));
    this.#headBytes += n;
    const sofar = Buffer.concat(this.#headParts);
    const end = sofar.indexOf(HEAD_END, Math.max(0, previous - 3));
    if (end < 0) {
      if (this.#headBytes > maxHeaderSize) this.#fail(new DownloadError(`GET ${this.url.href}: response head over ${maxHeaderSize} bytes`));
      return true;
    }
    this.#headDone = true;
    this.#headParts = [];
    if (end > maxHeaderSize) {
      this.#fail(new DownloadError(`GET ${this.url.href}: response head over ${maxHeaderSize} bytes`));
      return false;
    }
    let response: BulkResponse | undefined;
    try {
      response = this.#parseHead(sofar.subarray(0, end).toString('latin1'));
    } catch (e) {
      this.#fail(e);
      return false;
    }
    if (!response) {
      this.socket.destroy();
      this.#settleHead.resolve(undefined);
      return false;
    }
    this.#settleHead.resolve(response);
    // The body's first bytes came with the head, at this offset in the read buffer.
    const bodyStart = end + HEAD_END.length - previous;
    return this.body.deliver(buffer.subarray(Math.min(bodyStart, n), n));
  }

  #parseHead(text: string): BulkResponse | undefined {
    const [statusLine, ...lines] = text.split('\r\n');
    const status = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/.exec(statusLine!);
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
    const code = Number(status[1]);
    const length = headers['content-length'];
    if (code < 200 || code === 204 || code === 304 || headers['transfer-encoding'] !== undefined || !/^\d{1,15}$/.test(length ?? '')) {
      return undefined;
    }
    this.remaining = Number(length);
    return { status: code, headers, body: this.body };
  }

  #fail(error: unknown): void {
    this.#settleHead.reject(error);
    this.body.fail(error);
    this.socket.destroy();
  }
}

/** The body's chunks, each a view of the read buffer, handed out one at a time. */
export class BulkBody implements AsyncIterable<Uint8Array> {
  #chunk: Uint8Array | undefined;
  #held = false;
  #waiter: { resolve(r: IteratorResult<Uint8Array>): void; reject(e: unknown): void } | undefined;
  #error: unknown;
  #closed = false;

  constructor(private readonly connection: BulkConnection) {}

  /** Every Content-Length byte arrived. */
  get complete(): boolean {
    return this.connection.remaining === 0 && this.#error === undefined;
  }

  destroy(): void {
    this.#closed = true;
    this.connection.socket.destroy();
    this.#settle();
  }

  /** From the read callback: keeps the chunk until it is taken; false pauses the socket. */
  deliver(chunk: Uint8Array): boolean {
    if (chunk.byteLength === 0) {
      if (this.connection.remaining === 0) this.end();
      return true;
    }
    if (chunk.byteLength > this.connection.remaining) {
      this.fail(new DownloadError('more body bytes than the Content-Length'));
      this.connection.socket.destroy();
      return false;
    }
    this.connection.remaining -= chunk.byteLength;
    this.#chunk = chunk;
    if (this.connection.remaining === 0) this.#closed = true;
    this.#settle();
    return false;
  }

  /** The connection closed: the iteration ends after the chunk held, if any. */
  end(): void {
    this.#closed = true;
    this.#settle();
  }

  fail(error: unknown): void {
    if (this.complete && this.#chunk === undefined) return;
    this.#error ??= error;
    this.#closed = true;
    this.#settle();
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: () => {
        if (this.#held) {
          // The caller is done with the previous chunk: the read buffer is free again.
          this.#held = false;
          this.#chunk = undefined;
          if (!this.#closed) this.connection.socket.resume();
        }
        return new Promise((resolve, reject) => {
          this.#waiter = { resolve, reject };
          this.#settle();
        });
      },
      return: async () => {
        this.destroy();
        return { done: true, value: undefined };
      },
    };
  }

  #settle(): void {
    const waiter = this.#waiter;
    if (!waiter) return;
    if (this.#chunk !== undefined && !this.#held) {
      this.#waiter = undefined;
      this.#held = true;
      waiter.resolve({ done: false, value: this.#chunk });
    } else if (this.#error !== undefined) {
      this.#waiter = undefined;
      waiter.reject(this.#error);
    } else if (this.#closed && this.#chunk === undefined) {
      this.#waiter = undefined;
      this.connection.socket.destroy();
      waiter.resolve({ done: true, value: undefined });
    }
  }
}
