/**
 * The web console's routes: its page and assets (`/`, `/assets/*`), its session
 * (login, the session's CSRF token, logout), and two admin API routes it needs
 * that the CLI may use too: the fleet summary, the image repository's listing
 * and the live change stream (Server-Sent Events). Every other console action calls the admin API
 * routes of api.ts, with the session cookie and the CSRF header.
 */
import type { ServerResponse } from 'node:http';
import type { ImageRepository } from '../context.ts';
import { NotFoundError } from '../errors.ts';
import { listImages } from '../image-list.ts';
import type { FleetSummary } from '../admin-records.ts';
import type { ChangeFeed } from '../change-feed.ts';
import type { AdminAccess } from './admin-access.ts';
import { SECURITY_HEADERS, type ConsoleFiles } from './console-files.ts';
import { parseQuery } from './query.ts';
import type { Reply, Request, Router } from './router.ts';

/** A comment line this often keeps proxies from closing an idle stream. */
const KEEPALIVE_MS = 20_000;

export interface ConsoleRouteOptions {
  access: AdminAccess;
  imageRepo: ImageRepository;
  feed: ChangeFeed;
  fleetSummary: () => Promise<FleetSummary>;
  files: ConsoleFiles;
  nowSeconds: () => number;
}

export function addConsoleRoutes(router: Router, o: ConsoleRouteOptions): void {
  const { files } = o;
  const noQuery = (req: Request) => parseQuery(req.query, {});

  router.add('GET', '/', () => files.index());
  router.add('GET', '/assets/{file}', (req) => {
    const reply = files.asset(req.params.file!);
    if (!reply) throw new NotFoundError('console asset', req.params.file!);
    return reply;
  });

  router.add('POST', '/api/v1/console/login', async (req) => {
    noQuery(req);
    const body = (await req.json()) as { token?: unknown } | null;
    // Behind a TLS proxy the cookie must not travel over plain HTTP (Secure only restricts, so the header need not be trusted).
    const { session, setCookie } = o.access.login(body?.token, { secure: req.headers['x-forwarded-proto'] === 'https' });
    return { status: 200, body: session, headers: { 'set-cookie': setCookie, 'cache-control': 'no-store' } };
  });
  router.add('GET', '/api/v1/console/session', (req) => {
    noQuery(req);
    return { status: 200, body: o.access.session(req.headers), headers: { 'cache-control': 'no-store' } };
  });
  router.add('POST', '/api/v1/console/logout', (req) => {
    noQuery(req);
    return { status: 204, headers: { 'set-cookie': o.access.logout(req.headers) } };
  });

  router.add('GET', '/api/v1/admin/fleet', async (req) => {
    o.access.authorize(req);
    noQuery(req);
    return { status: 200, body: await o.fleetSummary() };
  });
  router.add('GET', '/api/v1/admin/images', async (req) => {
    o.access.authorize(req);
    noQuery(req);
    return { status: 200, body: { images: await listImages(o.imageRepo) } };
  });

  router.add('GET', '/api/v1/admin/events/stream', (req): Reply => {
    const caller = o.access.authorize(req);
    noQuery(req);
    return {
      status: 200,
      headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no', ...SECURITY_HEADERS },
      stream: (res) => streamChanges(res, o.feed, caller.session ? caller.session.expires * 1000 - o.nowSeconds() * 1000 : undefined),
    };
  });
}

/**
 * Writes `ready`, then one `change` event ({ devices, assignments, campaigns }:
 * the IDs that changed) per feed tick that found changes, until the client goes
 * away or its session expires.
 */
function streamChanges(res: ServerResponse, feed: ChangeFeed, sessionLeftMs: number | undefined): void {
  res.write('retry: 2000\nevent: ready\ndata: {}\n\n');
  const unsubscribe = feed.subscribe((change) => res.write(`event: change\ndata: ${JSON.stringify(change)}\n\n`));
  const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
  const expiry = sessionLeftMs === undefined ? undefined : setTimeout(() => res.end(), Math.max(0, sessionLeftMs));
  res.once('close', () => {
    unsubscribe();
    clearInterval(keepalive);
    clearTimeout(expiry);
  });
}
