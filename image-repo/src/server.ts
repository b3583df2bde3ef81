/**
 * The image repository HTTP server.
 *
 *   GET|HEAD /metadata/<N.role.json | timestamp.json | root.json>   static TUF layout
 *   GET|HEAD /targets/<dir/><sha256|sha512>.<base>                   images (ETag, Range)
 *   PUT  /api/v1/images/<name>        upload an image (bearer token), not yet published
 *   POST /api/v1/publish              { roots?, targets?, delegated? } signed metadata (bearer token)
 *   GET  /api/v1/status               current versions and targets
 *   GET  /api/v1/openapi.json         the OpenAPI 3.1 description of all of this (openapi.ts)
 *   GET  /metrics, /healthz
 *
 * The routes are one table (ROUTES): the dispatcher matches requests against it, and the
 * OpenAPI document must describe exactly these (openapi.test.ts).
 * Reads come from committed SQLite rows and immutable blobs, so a response is
 * always of one published version. Errors are `{ error: { code, message } }`.
 * A timer re-signs timestamp (and snapshot) before they expire.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { Metadata, fromUtf8, utf8, type UpfleetError } from '@upfleet/core';
import {
  BadRequestError,
  httpStatusOf,
  MethodNotAllowedError,
  NotFoundError,
  PortInUseError,
  RangeNotSatisfiableError,
  UnauthorizedError,
  UploadTooLargeError,
} from './errors.ts';
import { checkRoleName, checkTargetName } from './names.ts';
import { openApiDocument } from './openapi.ts';
import { KeyDirKeyring, onlinePassphrase, type OnlineKeyring } from './online-keys.ts';
import type { PublishBatch } from './publisher.ts';
import { RepoStore } from './repo-store.ts';
import { Workspace } from './workspace.ts';

export interface ImageRepoServerOptions {
  dir: string;
  port?: number;
  host?: string;
  /** Bearer token of the upload API. */
  token: string;
  /**
   * Decrypts the online keys in DIR/keys/online (default: DIR/keys/online/passphrase); or give
   * `keyring`. The server never takes the offline passphrase and never opens keys/offline/.
   */
  onlinePassphrase?: string;
  keyring?: OnlineKeyring;
  /** Seconds; default from DIR/upfleet-repo.json. */
  snapshotExpiry?: number;
  timestampExpiry?: number;
  /** How often the expiry timer looks; default a quarter of the timestamp period, at most 60 s. */
  refreshIntervalMs?: number;
  maxUploadBytes?: number;
  maxMetadataBytes?: number;
  logger?: Logger;
  logLevel?: string;
  /** Fault injection for crash tests: block inside the publish transaction before COMMIT. */
  pauseBeforeCommitMs?: number;
  now?: () => Date;
}

export interface ImageRepoServer {
  url: string;
  port: number;
  store: RepoStore;
  registry: Registry;
  /** Runs the expiry check now (the timer calls this). */
  refresh(): void;
  close(): Promise<void>;
}

const DEFAULT_MAX_UPLOAD = 1 << 30;
const DEFAULT_MAX_METADATA = 16 << 20;

/**
 * @throws WorkspaceError when DIR is not initialised, OldKeyLayoutError for keys of the old layout;
 * KeyFileError on a wrong or missing online passphrase; PortInUseError when the port is taken.
 */
export async function startImageRepoServer(options: ImageRepoServerOptions): Promise<ImageRepoServer> {
  const workspace = new Workspace(options.dir);
  const settings = workspace.settings();
  workspace.checkKeyLayout();
  const log = options.logger ?? pino({ name: 'upfleet-repo', level: options.logLevel ?? 'info' });
  const now = options.now ?? (() => new Date());
  const timestampExpiry = options.timestampExpiry ?? settings.expiries.timestamp;
  const snapshotExpiry = options.snapshotExpiry ?? settings.expiries.snapshot;
  const keyring = options.keyring ?? new KeyDirKeyring(workspace.onlineKeysDir, onlinePassphrase(workspace, options.onlinePassphrase));
  const store = new RepoStore({
    workspace,
    keyring,
    snapshotExpiry,
    timestampExpiry,
    pauseBeforeCommitMs: options.pauseBeforeCommitMs,
    onPause: () => process.stderr.write(JSON.stringify({ msg: 'fault injection: pausing before commit' }) + '\n'),
  });
  // Decrypt the online keys up front: a wrong passphrase fails at start, not at the first upload.
  try {
    const state = store.publisher.state();
    if (state) {
      for (const role of ['snapshot', 'timestamp'] as const) keyring.signers(state.root.signed.roles[role].keyids);
    }
    const booted = store.bootstrap(workspace, now());
    if (booted) log.info({ versions: booted.versions }, 'bootstrapped from the working copy');
  } catch (error) {
    store.close();
    throw error;
  }

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = createMetrics(registry, store);
  const tokenDigest = sha256(options.token);
  const limits = { upload: options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD, metadata: options.maxMetadataBytes ?? DEFAULT_MAX_METADATA };

  const refresh = (): void => {
    try {
      const result = store.publisher.refreshExpiring(now());
      if (result) log.info({ versions: result.versions }, 'refreshed expiring metadata');
    } catch (error) {
      log.error({ err: error }, 'expiry refresh failed');
    }
  };
  refresh();
  const interval = options.refreshIntervalMs ?? Math.min((timestampExpiry * 1000) / 4, 60_000);
  const timer = setInterval(refresh, Math.max(interval, 50));
  timer.unref();

  const handler = new RequestHandler({ store, log, metrics, registry, tokenDigest, limits, now });
  const server: Server = createServer((req, res) => void handler.handle(req, res));
  // Longer than a client's idle keep-alive (Node's agent: 5 s, the server's default too): the client
  // drops an idle socket first, never reusing one the server is closing (ECONNRESET on a publish
  // after a slow signing step). The director does the same.
  server.keepAliveTimeout = 65_000;
  const host = options.host ?? '127.0.0.1';
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => resolve());
    });
  } catch (error) {
    clearInterval(timer);
    store.close();
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new PortInUseError('the image repository', host, options.port ?? 0, '--port', 'choose another with --port P (0 = any free port)', { cause: error });
    }
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host}:${port}`;
  log.info({ url, versions: store.publisher.versions() }, 'listening');

  return {
    url,
    port,
    store,
    registry,
    refresh,
    close: async () => {
      clearInterval(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      store.close();
    },
  };
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

interface Metrics {
  requests: Counter<'method' | 'route' | 'status'>;
  duration: Histogram<'route'>;
  publishes: Counter<'result'>;
  uploadedBytes: Counter;
}

function createMetrics(registry: Registry, store: RepoStore): Metrics {
  new Gauge({
    name: 'upfleet_repo_role_version',
    help: 'Current published version of each role',
    labelNames: ['role'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of store.db.roles()) this.set({ role: r.name }, r.version);
    },
  });
  new Gauge({
    name: 'upfleet_repo_timestamp_expires_seconds',
    help: 'Unix time at which the published timestamp expires',
    registers: [registry],
    collect() {
      const ts = store.db.currentFile('timestamp');
      if (ts) this.set(Date.parse(Metadata.fromBytes(ts.bytes, 'timestamp').signed.expires) / 1000);
    },
  });
  return {
    requests: new Counter({ name: 'upfleet_repo_http_requests_total', help: 'HTTP requests', labelNames: ['method', 'route', 'status'], registers: [registry] }),
    duration: new Histogram({ name: 'upfleet_repo_http_request_duration_seconds', help: 'HTTP request duration', labelNames: ['route'], registers: [registry] }),
    publishes: new Counter({ name: 'upfleet_repo_publish_total', help: 'Publish requests by result', labelNames: ['result'], registers: [registry] }),
    uploadedBytes: new Counter({ name: 'upfleet_repo_uploaded_bytes_total', help: 'Bytes of images stored', registers: [registry] }),
  };
}

interface HandlerContext {
  store: RepoStore;
  log: Logger;
  metrics: Metrics;
  registry: Registry;
  tokenDigest: Buffer;
  limits: { upload: number; metadata: number };
  now: () => Date;
}

class RequestHandler {
  constructor(private readonly ctx: HandlerContext) {}

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const path = (req.url ?? '/').split('?')[0]!;
    const match = matchRoute(path);
    const route = match?.route.name ?? 'other';
    try {
      if (!match) throw new NotFoundError(path);
      const method = req.method ?? 'GET';
      if (!(match.route.methods as readonly string[]).includes(method)) throw new MethodNotAllowedError(`${method} ${path}`);
      await this.dispatch(req, res, match.route.name, match.param === undefined ? '' : decodePath(match.param));
    } catch (error) {
      this.fail(req, res, error);
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.ctx.metrics.requests.inc({ method: req.method ?? '', route, status: String(res.statusCode) });
      this.ctx.metrics.duration.observe({ route }, seconds);
      this.ctx.log.debug({ method: req.method, url: req.url, status: res.statusCode, ms: Math.round(seconds * 1000) }, 'request');
    }
  }

  /** Runs a route whose path and method matched; `param` is its path parameter, decoded. */
  private async dispatch(req: IncomingMessage, res: ServerResponse, route: RouteName, param: string): Promise<void> {
    switch (route) {
      case 'metadata':
        return this.metadata(req, res, param);
      case 'targets':
        return this.target(req, res, param);
      case 'images':
        this.authenticate(req);
        return this.uploadImage(req, res, param);
      case 'publish':
        this.authenticate(req);
        return this.publish(req, res);
      case 'status':
        return sendJson(res, 200, this.status());
      case 'openapi':
        return sendJson(res, 200, openApiDocument());
      case 'metrics':
        res.writeHead(200, { 'content-type': this.ctx.registry.contentType });
        res.end(await this.ctx.registry.metrics());
        return;
      case 'healthz':
        return sendJson(res, 200, { ok: true, versions: this.ctx.store.publisher.versions() });
    }
  }

  private authenticate(req: IncomingMessage): void {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer (.+)$/.exec(header);
    // Compare digests: equal lengths, and timingSafeEqual does not leak where they differ.
    if (!match || !timingSafeEqual(sha256(match[1]!), this.ctx.tokenDigest)) throw new UnauthorizedError();
  }

  private metadata(req: IncomingMessage, res: ServerResponse, name: string): void {
    const { db } = this.ctx.store;
    const file = name === 'timestamp.json' ? db.currentFile('timestamp') : name === 'root.json' ? db.currentFile('root') : /^\d+\./.test(name) ? db.file(name) : undefined;
    if (!file) throw new NotFoundError(`/metadata/${name}`);
    const etag = `"${file.sha256}"`;
    const mutable = name === 'timestamp.json' || name === 'root.json';
    const headers = {
      'content-type': 'application/json',
      etag,
      'cache-control': mutable ? 'no-cache' : 'public, max-age=31536000, immutable',
    };
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, headers).end();
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': file.bytes.byteLength });
    res.end(req.method === 'HEAD' ? undefined : file.bytes);
  }

  private target(req: IncomingMessage, res: ServerResponse, path: string): void {
    const found = this.findTarget(path);
    if (!found) throw new NotFoundError(`/targets/${path}`);
    const size = found.length;
    const etag = `"${found.sha256}"`;
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      etag,
      'accept-ranges': 'bytes',
      'cache-control': 'public, max-age=31536000, immutable',
    };
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, headers).end();
      return;
    }
    const rangeHeader = req.headers.range;
    const ifRange = req.headers['if-range'];
    const range = rangeHeader !== undefined && (ifRange === undefined || ifRange === etag) ? parseRange(rangeHeader, size) : undefined;
    if (range === 'unsatisfiable') {
      res.setHeader('content-range', `bytes */${size}`);
      throw new RangeNotSatisfiableError(rangeHeader!, size);
    }
    const { start, end } = range ?? { start: 0, end: size - 1 };
    if (range) {
      res.writeHead(206, { ...headers, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}` });
    } else {
      res.writeHead(200, { ...headers, 'content-length': size });
    }
    if (req.method === 'HEAD' || size === 0) {
      res.end();
      return;
    }
    const stream = this.ctx.store.blobs.read(found.sha256, start, end);
    stream.on('error', (err) => {
      this.ctx.log.error({ err, sha256: found.sha256 }, 'blob read failed');
      res.destroy(err);
    });
    stream.pipe(res);
  }

  /**
   * `dir/<hash>.base` (what TUF clients ask for) or `<hash>.dir/base`; the hash is a sha256 or
   * sha512 of a published target of that name. Names are looked up, never joined into paths.
   */
  private findTarget(path: string): { sha256: string; length: number } | undefined {
    const slash = path.lastIndexOf('/');
    const forms = [[path.slice(0, slash + 1), path.slice(slash + 1)], ['', path]] as const;
    for (const [dir, base] of forms) {
      const m = /^([0-9a-f]{64}|[0-9a-f]{128})\.(.+)$/.exec(base);
      const found = m && this.ctx.store.db.publishedTarget(dir + m[2], m[1]!);
      if (found) return found;
    }
    return undefined;
  }

  private async uploadImage(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    checkTargetName(name);
    const limit = this.ctx.limits.upload;
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > limit) throw new UploadTooLargeError(limit);
    const info = await this.ctx.store.addImage(req, limit);
    this.ctx.metrics.uploadedBytes.inc(info.length);
    this.ctx.log.info({ target: name, ...info }, 'image stored');
    sendJson(res, 201, { name, length: info.length, hashes: { sha256: info.sha256, sha512: info.sha512 } });
  }

  private async publish(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, this.ctx.limits.metadata);
    try {
      const batch = parsePublishBody(body);
      const result = this.ctx.store.publisher.publish(batch, this.ctx.now());
      this.ctx.metrics.publishes.inc({ result: 'ok' });
      for (const w of result.warnings) this.ctx.log.warn({ warning: w }, 'delegated role needs re-signing');
      this.ctx.log.info({ versions: result.versions }, 'published');
      sendJson(res, 200, result);
    } catch (error) {
      this.ctx.metrics.publishes.inc({ result: 'rejected' });
      throw error;
    }
  }

  private status(): unknown {
    const state = this.ctx.store.publisher.state();
    const targets: Array<{ name: string; role: string; length: number; custom: unknown }> = [];
    if (state) {
      for (const [role, md] of [['targets', state.targets] as const, ...state.delegated]) {
        for (const [name, info] of Object.entries(md.signed.targets)) targets.push({ name, role, length: info.length, custom: info.custom });
      }
    }
    return { versions: this.ctx.store.publisher.versions(), targets };
  }

  private fail(req: IncomingMessage, res: ServerResponse, error: unknown): void {
    const status = httpStatusOf(error);
    const code = status === 500 ? 'INTERNAL' : ((error as UpfleetError).code ?? 'INTERNAL');
    const message = status === 500 ? 'internal error' : (error as Error).message;
    if (status >= 500) this.ctx.log.error({ err: error, method: req.method, url: req.url }, 'request failed');
    // 404 is routine (clients probe for the next root); other refusals are worth a warning.
    else this.ctx.log[status === 404 ? 'debug' : 'warn']({ code, message, method: req.method, url: req.url }, 'request refused');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // After a 413, or with the body of a refused request unread, the connection cannot carry
    // another request: close it, and destroy the socket once the answer is written.
    if (status === 413 || !req.complete) res.setHeader('connection', 'close');
    const socket = res.socket; // detached from res by the time 'finish' fires
    if (!req.complete) res.once('finish', () => socket?.destroy());
    sendJson(res, status, { error: { code, message } });
  }
}

/**
 * Every route of the server: its name (the `route` label of the metrics), methods and path.
 * A `{param}` is one path segment, except a route's trailing parameter marked `rest`, which
 * takes the rest of the path: target names have `/` in them.
 */
export const ROUTES = [
  { name: 'metadata', methods: ['GET', 'HEAD'], path: '/metadata/{file}' },
  { name: 'targets', methods: ['GET', 'HEAD'], path: '/targets/{target}', rest: true },
  { name: 'images', methods: ['PUT'], path: '/api/v1/images/{name}', rest: true },
  { name: 'publish', methods: ['POST'], path: '/api/v1/publish' },
  { name: 'status', methods: ['GET'], path: '/api/v1/status' },
  { name: 'openapi', methods: ['GET'], path: '/api/v1/openapi.json' },
  { name: 'metrics', methods: ['GET'], path: '/metrics' },
  { name: 'healthz', methods: ['GET'], path: '/healthz' },
] as const satisfies ReadonlyArray<{ name: string; methods: readonly string[]; path: string; rest?: boolean }>;

type Route = (typeof ROUTES)[number];
type RouteName = Route['name'];

const ROUTE_PATTERNS = ROUTES.map((route) => {
  const src = route.path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{\w+\}/, 'rest' in route ? '(.+)' : '([^/]+)');
  return { route: route as Route, regex: new RegExp(`^${src}$`) };
});

/** The route serving a path, and its raw (still percent-encoded) parameter. */
function matchRoute(path: string): { route: Route; param: string | undefined } | undefined {
  for (const { route, regex } of ROUTE_PATTERNS) {
    const m = regex.exec(path);
    if (m) return { route, param: m[1] };
  }
  return undefined;
}

function decodePath(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new BadRequestError(`bad URL encoding in ${raw}`);
  }
}

/**
 * One `bytes=` range (RFC 9110 14.1.2). Several ranges or a malformed header
 * are ignored (the whole file is sent), which the RFC allows.
 */
export function parseRange(header: string, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Number(m[2]);
  if (m[2] !== '' && end < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end: Math.min(end, size - 1) };
}

async function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  if (Number(req.headers['content-length'] ?? 0) > limit) throw new UploadTooLargeError(limit);
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    length += chunk.byteLength;
    if (length > limit) throw new UploadTooLargeError(limit);
    chunks.push(chunk);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

/** `{ roots?: object[], targets?: object, delegated?: { role: object } }` -> bytes per metadata. */
function parsePublishBody(body: Uint8Array): PublishBatch {
  let json: unknown;
  try {
    json = JSON.parse(fromUtf8(body));
  } catch {
    throw new BadRequestError('the body is not JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new BadRequestError('the body must be an object');
  const { roots, targets, delegated, ...rest } = json as Record<string, unknown>;
  if (Object.keys(rest).length > 0) throw new BadRequestError(`unknown field ${Object.keys(rest)[0]}`);
  const toBytes = (v: unknown) => utf8(JSON.stringify(v));
  if (roots !== undefined && !Array.isArray(roots)) throw new BadRequestError('roots must be an array');
  if (delegated !== undefined && (typeof delegated !== 'object' || delegated === null || Array.isArray(delegated))) {
    throw new BadRequestError('delegated must be an object of role name -> metadata');
  }
  const batch: PublishBatch = {
    roots: (roots as unknown[] | undefined)?.map(toBytes),
    targets: targets === undefined ? undefined : toBytes(targets),
    delegated: delegated === undefined ? undefined : Object.fromEntries(Object.entries(delegated).map(([k, v]) => [checkRoleName(k), toBytes(v)])),
  };
  if (!batch.roots?.length && !batch.targets && Object.keys(batch.delegated ?? {}).length === 0) throw new BadRequestError('nothing to publish');
  return batch;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const bytes = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(bytes) });
  res.end(bytes);
}
