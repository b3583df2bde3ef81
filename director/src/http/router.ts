/**
 * A small HTTP router: routes are `METHOD /path/{param}` patterns; handlers get
 * decoded params, the query and a lazily read body (capped), and return
 * `{ status, body | bytes }`. Typed DirectorErrors become `{ error: { code,
 * message, ...fields } }` with their status; anything else is a logged 500.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { UpfleetError } from '@upfleet/core';
import { BadRequestError, DirectorError } from '../errors.ts';
import type { DirectorMetrics } from '../metrics.ts';

export interface Request {
  method: string;
  params: Record<string, string>;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body(): Promise<Uint8Array>;
  json(): Promise<unknown>;
}

export type Reply =
  | { status: number; body?: unknown; headers?: Record<string, string> }
  | { status: number; bytes: Uint8Array; contentType: string; headers?: Record<string, string> }
  /** A response written over time (Server-Sent Events): `stream` gets the response after the head is sent. */
  | { status: number; stream: (res: ServerResponse) => void; headers: Record<string, string> };

export type Handler = (req: Request) => Reply | Promise<Reply>;

interface Route {
  method: string;
  pattern: string;
  regex: RegExp;
  names: string[];
  handler: Handler;
}

export const MAX_BODY = 1 << 20;

async function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).byteLength;
    if (size > limit) throw new DirectorError(413, 'BODY_TOO_LARGE', `request body over ${limit} bytes`, { limit });
    chunks.push(chunk as Buffer);
  }
  const b = Buffer.concat(chunks);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export class Router {
  #routes: Route[] = [];

  constructor(
    private readonly log: Logger,
    private readonly metrics: DirectorMetrics,
  ) {}

  add(method: string, pattern: string, handler: Handler): void {
    const names: string[] = [];
    const src = pattern.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{(\w+)\}/g, (_m, name: string) => {
      names.push(name);
      return '([^/]+)';
    });
    this.#routes.push({ method, pattern, regex: new RegExp(`^${src}$`), names, handler });
  }

  /** The registered routes in order (the OpenAPI document must describe exactly these). */
  routes(): Array<{ method: string; pattern: string }> {
    return this.#routes.map(({ method, pattern }) => ({ method, pattern }));
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const url = new URL(req.url ?? '/', 'http://director');
    let route: Route | undefined;
    let match: RegExpExecArray | null = null;
    let pathKnown = false;
    for (const r of this.#routes) {
      const m = r.regex.exec(url.pathname);
      if (!m) continue;
      pathKnown = true;
      if (r.method === req.method) {
        route = r;
        match = m;
        break;
      }
    }
    let reply: Reply;
    try {
      if (!route || !match) {
        reply = pathKnown ? errorReply(new DirectorError(405, 'METHOD_NOT_ALLOWED', `${req.method} not allowed`)) : errorReply(new DirectorError(404, 'NOT_FOUND', `no route ${url.pathname}`));
      } else {
        const params: Record<string, string> = {};
        route.names.forEach((n, i) => (params[n] = decodeParam(match![i + 1]!)));
        let body: Promise<Uint8Array> | undefined;
        const request: Request = {
          method: req.method ?? 'GET', params, query: url.searchParams, headers: req.headers,
          body: () => (body ??= readBody(req, MAX_BODY)),
          json: async () => {
            const bytes = await request.body();
            if (bytes.byteLength === 0) return {};
            try {
              return JSON.parse(Buffer.from(bytes).toString('utf8'));
            } catch (cause) {
              throw new BadRequestError('body is not JSON', {}, { cause });
            }
          },
        };
        reply = await route.handler(request);
      }
    } catch (error) {
      if (!(error instanceof DirectorError) && !(error instanceof UpfleetError)) this.log.error({ err: error, url: url.pathname }, 'request failed');
      reply = errorReply(error);
    }
    closeIfBodyUnread(req, res, reply);
    send(res, reply);
    this.metrics.httpRequests.observe(
      { method: req.method ?? '', route: route?.pattern ?? 'unknown', status: String(reply.status) },
      Number(process.hrtime.bigint() - started) / 1e9,
    );
  }
}

/**
 * After a 413, or any answer given before the request body was read to its end, the
 * connection cannot carry another request (the rest of the body would be parsed as
 * one, or the paused body would stall it forever): say `Connection: close`, and
 * destroy the socket once the answer is written.
 */
function closeIfBodyUnread(req: IncomingMessage, res: ServerResponse, reply: Reply): void {
  const unread = !req.complete;
  if (reply.status !== 413 && !unread) return;
  reply.headers = { ...reply.headers, connection: 'close' };
  const socket = res.socket; // detached from res by the time 'finish' fires
  if (unread) res.once('finish', () => socket?.destroy());
}

export function errorReply(error: unknown): Reply {
  if (error instanceof DirectorError) {
    return { status: error.status, body: { error: { code: error.code, message: error.message, ...error.fields } } };
  }
  if (error instanceof UpfleetError) {
    // Core errors reaching here come from a remote party (the image repository) or from input.
    return { status: 502, body: { error: { code: error.code, message: error.message } } };
  }
  return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } } };
}

function send(res: ServerResponse, reply: Reply): void {
  if ('stream' in reply) {
    res.writeHead(reply.status, reply.headers);
    reply.stream(res);
    return;
  }
  if ('bytes' in reply) {
    res.writeHead(reply.status, { 'content-type': reply.contentType, 'content-length': reply.bytes.byteLength, ...reply.headers });
    res.end(reply.bytes);
    return;
  }
  if (reply.body === undefined) {
    res.writeHead(reply.status, reply.headers);
    res.end();
    return;
  }
  const text = JSON.stringify(reply.body);
  res.writeHead(reply.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...reply.headers });
  res.end(text);
}

/** A path parameter, percent-decoded; bad encoding (`%ZZ`) is the client's error, not a 500. */
function decodeParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch (cause) {
    throw new BadRequestError(`bad URL encoding in ${raw}`, {}, { cause });
  }
}
