/**
 * A man in the middle on loopback (node:http), between an agent and one
 * server: it forwards everything unless a rule claims the request, and then it
 * can rewrite the upstream body, serve other bytes (old or forged metadata),
 * trickle, or send without end.
 *
 * Invariants:
 * - Rules are tried in order; the first that returns an action wins. With no
 *   rules the proxy is transparent (status, headers that matter, body).
 * - Every request is logged (`requests`), and request bodies of POSTs are kept
 *   (`posts`), so tests can replay what the agent sent.
 * - `clear()` drops rules and logs; `close()` ends every open response
 *   (trickles and endless streams included).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { listenLoopback, type Loopback } from './loopback.ts';

export type ProxyAction =
  /** Serve these bytes instead of asking upstream. */
  | { kind: 'serve'; body: Uint8Array; status?: number }
  /** Ask upstream, then change the body. */
  | { kind: 'rewrite'; fn: (body: Buffer) => Uint8Array }
  /** Ask upstream, then send the body at `bytesPerSecond`. */
  | { kind: 'trickle'; bytesPerSecond: number }
  /**
   * Send the upstream body, then filler bytes until the client gives up; with
   * `upstream: false`, a 200 of filler only (the request never reaches the server).
   */
  | { kind: 'endless'; upstream?: boolean };

export interface ProxyRequest {
  method: string;
  /** Path and query, as the client sent it. */
  path: string;
  headers: IncomingMessage['headers'];
}

export type ProxyRule = (req: ProxyRequest) => ProxyAction | undefined;

export class AttackProxy {
  readonly rules: ProxyRule[] = [];
  readonly requests: Array<{ method: string; path: string; status: number; action: string }> = [];
  readonly posts: Array<{ path: string; body: Buffer; headers: IncomingMessage['headers'] }> = [];
  #listening: Loopback | undefined;
  #sockets = new Set<Socket>();
  url = '';

  constructor(readonly upstream: string) {}

  async start(): Promise<this> {
    const server = createServer((req, res) => void this.#handle(req, res).catch(() => res.destroy()));
    server.on('connection', (s) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
    this.#listening = await listenLoopback(server);
    this.url = this.#listening.url;
    return this;
  }

  /** Adds a rule for requests whose path matches `match` (a substring or a RegExp). */
  on(match: string | RegExp, action: ProxyAction | ((req: ProxyRequest) => ProxyAction | undefined)): this {
    this.rules.push((req) => {
      const path = req.path.split('?')[0]!;
      const hit = typeof match === 'string' ? path.includes(match) : match.test(path);
      if (!hit) return undefined;
      return typeof action === 'function' ? action(req) : action;
    });
    return this;
  }

  clear(): void {
    this.rules.length = 0;
    this.requests.length = 0;
    this.posts.length = 0;
  }

  /** Fetches a path from upstream directly (to capture old metadata). */
  async get(path: string, headers: Record<string, string> = {}): Promise<Buffer> {
    const res = await fetch(this.upstream + path, { headers });
    if (!res.ok) throw new Error(`upstream ${path}: ${res.status}`);
    return Buffer.from(await res.arrayBuffer());
  }

  async #upstream(req: IncomingMessage, body: Buffer): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
    const headers: Record<string, string> = {};
    for (const h of ['authorization', 'content-type', 'range', 'if-none-match', 'accept']) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    const res = await fetch(this.upstream + (req.url ?? '/'), {
      method: req.method ?? 'GET', headers, ...(body.length > 0 && { body }),
    });
    const out: Record<string, string> = {};
    for (const h of ['content-type', 'content-range', 'accept-ranges', 'etag']) {
      const v = res.headers.get(h);
      if (v !== null) out[h] = v;
    }
    return { status: res.status, headers: out, body: Buffer.from(await res.arrayBuffer()) };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const r: ProxyRequest = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers };
    if (r.method === 'POST') this.posts.push({ path: r.path, body, headers: req.headers });
    let action: ProxyAction | undefined;
    for (const rule of this.rules) if ((action = rule(r))) break;
    const log = (status: number) => this.requests.push({ method: r.method, path: r.path, status, action: action?.kind ?? 'forward' });

    if (action?.kind === 'serve') {
      const status = action.status ?? 200;
      log(status);
      res.writeHead(status, { 'content-length': action.body.byteLength, 'content-type': 'application/octet-stream' }).end(action.body);
      return;
    }
    const up = action?.kind === 'endless' && action.upstream === false
      ? { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.alloc(0) }
      : await this.#upstream(req, body);
    log(up.status);
    if (!action || up.status >= 300) {
      res.writeHead(up.status, { ...up.headers, 'content-length': up.body.length }).end(up.body);
      return;
    }
    if (action.kind === 'rewrite') {
      const out = action.fn(up.body);
      res.writeHead(up.status, { ...up.headers, 'content-length': out.byteLength }).end(out);
      return;
    }
    if (action.kind === 'trickle') {
      res.writeHead(up.status, { ...up.headers, 'content-length': up.body.length });
      const step = Math.max(1, Math.round(action.bytesPerSecond / 10));
      for (let o = 0; o < up.body.length && !res.destroyed; o += step) {
        res.write(up.body.subarray(o, o + step));
        await new Promise((t) => setTimeout(t, 100));
      }
      res.end();
      return;
    }
    // endless: no content-length, the body never ends on its own.
    res.writeHead(up.status, { 'content-type': up.headers['content-type'] ?? 'application/octet-stream' });
    res.write(up.body);
    const filler = Buffer.alloc(64 * 1024, 0x20);
    while (!res.destroyed && !res.writableEnded) {
      if (res.write(filler)) continue;
      await new Promise<void>((d) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          d();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
  }

  async close(): Promise<void> {
    if (!this.#listening) return;
    for (const s of this.#sockets) s.destroy();
    await this.#listening.close();
  }
}
