/**
 * Who may call the admin API, and how. Two roles: `operator` (the admin token)
 * and `viewer` (the viewer token, when one is configured), each presented either
 * as a bearer token (the CLI, scripts) or as a web console session cookie.
 *
 * Invariants:
 * - Sessions are stateless: `upfleet_session=<payload>.<mac>`, the payload being
 *   base64url JSON `{ role, sid, exp }` and the MAC an HMAC-SHA256 under a key
 *   derived from the admin and viewer tokens. Every director process of one
 *   deployment has those tokens, so each accepts the sessions of the others, and
 *   changing either token ends every session.
 * - A request with the cookie that may change state (any method but GET and HEAD)
 *   must carry `X-Upfleet-CSRF`: an HMAC of the session payload, which the console
 *   page learns from the login answer or GET /api/v1/console/session. A page of
 *   another origin can make a browser send the cookie (where SameSite=Strict is not
 *   honoured) but cannot read that token. Bearer requests need no CSRF token: a
 *   browser never adds an Authorization header on its own.
 * - The viewer role reads only: any other method is 403 READ_ONLY_ROLE.
 * - Secrets and MACs compare in constant time.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { bearer, secretEquals } from '../auth.ts';
import { BadRequestError, ForbiddenError, UnauthenticatedError } from '../errors.ts';

export type Role = 'operator' | 'viewer';

export const SESSION_COOKIE = 'upfleet_session';
export const CSRF_HEADER = 'x-upfleet-csrf';
export const DEFAULT_SESSION_SECONDS = 12 * 3600;

/** What the console page knows about its session (the cookie itself stays HttpOnly). */
export interface SessionInfo {
  role: Role;
  csrfToken: string;
  /** Unix seconds. */
  expires: number;
}

/** Who made a request, and through which credential. */
export interface Caller {
  role: Role;
  via: 'bearer' | 'session';
  session?: SessionInfo;
}

interface SessionPayload {
  role: Role;
  sid: string;
  exp: number;
}

const READS = new Set(['GET', 'HEAD']);

export interface AdminAccessOptions {
  adminToken: string;
  /** The read-only token; without it there is no viewer role. */
  viewerToken?: string;
  nowSeconds: () => number;
  sessionSeconds?: number;
}

export class AdminAccess {
  readonly #key: Buffer;

  constructor(private readonly o: AdminAccessOptions) {
    if (o.viewerToken !== undefined && secretEquals(o.viewerToken, o.adminToken)) throw new RangeError('the viewer token must differ from the admin token');
    this.#key = createHmac('sha256', o.adminToken).update(`upfleet-console-session/v1\0${o.viewerToken ?? ''}`).digest();
  }

  /**
   * The caller of an admin request, checked for what the request does.
   * @throws UnauthenticatedError (401: no credential, or an expired or forged session),
   *   ForbiddenError WRONG_ADMIN_TOKEN, CSRF_TOKEN_MISSING, BAD_CSRF_TOKEN, READ_ONLY_ROLE (403)
   */
  authorize(req: { method: string; headers: IncomingHttpHeaders }): Caller {
    const caller = this.#identify(req);
    if (READS.has(req.method)) return caller;
    if (caller.via === 'session') this.#checkCsrf(req.headers, caller.session!);
    if (caller.role === 'viewer') throw new ForbiddenError('READ_ONLY_ROLE', 'the viewer role may not change anything', { role: 'viewer' });
    return caller;
  }

  /**
   * A new session for whoever holds `token`, and the Set-Cookie header value that carries it
   * (marked Secure when `secure`: the page came over HTTPS, through a TLS proxy).
   * @throws BadRequestError (no token), UnauthenticatedError (neither the admin nor the viewer token)
   */
  login(token: unknown, { secure = false }: { secure?: boolean } = {}): { session: SessionInfo; setCookie: string } {
    if (typeof token !== 'string' || token.length === 0) throw new BadRequestError('token is required', { field: 'token' });
    const role = this.#roleOf(token);
    if (!role) throw new UnauthenticatedError('the token is neither the admin token nor the viewer token');
    const seconds = this.o.sessionSeconds ?? DEFAULT_SESSION_SECONDS;
    const payload = Buffer.from(JSON.stringify({ role, sid: randomBytes(16).toString('base64url'), exp: this.o.nowSeconds() + seconds })).toString('base64url');
    const value = `${payload}.${this.#mac('session', payload)}`;
    return { session: this.#info(payload)!, setCookie: cookie(value, seconds, secure) };
  }

  /**
   * Ends the request's session in the browser (any role; the CSRF token is required,
   * as for every change made with the cookie). Sessions are stateless: a copy of the
   * cookie kept elsewhere stays valid until it expires.
   * @returns the Set-Cookie header value
   * @throws UnauthenticatedError, ForbiddenError CSRF_TOKEN_MISSING, BAD_CSRF_TOKEN
   */
  logout(headers: IncomingHttpHeaders): string {
    this.#checkCsrf(headers, this.session(headers));
    return cookie('', 0);
  }

  /** The session of a request's cookie. @throws UnauthenticatedError */
  session(headers: IncomingHttpHeaders): SessionInfo {
    const value = cookieValue(headers.cookie, SESSION_COOKIE);
    if (value === undefined) throw new UnauthenticatedError('no console session: log in');
    const dot = value.indexOf('.');
    const payload = value.slice(0, dot);
    if (dot < 0 || !macEquals(value.slice(dot + 1), this.#mac('session', payload))) throw new UnauthenticatedError('the console session is not valid: log in again');
    const info = this.#info(payload);
    if (!info || info.expires <= this.o.nowSeconds()) throw new UnauthenticatedError('the console session expired: log in again');
    return info;
  }

  #identify(req: { headers: IncomingHttpHeaders }): Caller {
    const header = req.headers.authorization;
    if (header === undefined && req.headers.cookie !== undefined) {
      const session = this.session(req.headers);
      return { role: session.role, via: 'session', session };
    }
    const token = bearer(header, 'Bearer');
    if (!token) throw new UnauthenticatedError('no admin token: send Authorization: Bearer <admin token>');
    const role = this.#roleOf(token);
    if (!role) throw new ForbiddenError('WRONG_ADMIN_TOKEN', 'the bearer token is not the admin token');
    return { role, via: 'bearer' };
  }

  #checkCsrf(headers: IncomingHttpHeaders, session: SessionInfo): void {
    const given = headers[CSRF_HEADER];
    if (typeof given !== 'string' || given.length === 0) throw new ForbiddenError('CSRF_TOKEN_MISSING', `a request with the session cookie that changes state needs the ${CSRF_HEADER} header`);
    if (!macEquals(given, session.csrfToken)) throw new ForbiddenError('BAD_CSRF_TOKEN', `the ${CSRF_HEADER} header is not this session's token`);
  }

  #roleOf(token: string): Role | undefined {
    if (secretEquals(token, this.o.adminToken)) return 'operator';
    if (this.o.viewerToken !== undefined && secretEquals(token, this.o.viewerToken)) return 'viewer';
    return undefined;
  }

  #info(payload: string): SessionInfo | undefined {
    let p: SessionPayload;
    try {
      p = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as SessionPayload;
    } catch {
      return undefined;
    }
    if ((p.role !== 'operator' && p.role !== 'viewer') || typeof p.exp !== 'number') return undefined;
    return { role: p.role, csrfToken: this.#mac('csrf', payload), expires: p.exp };
  }

  #mac(purpose: 'session' | 'csrf', payload: string): string {
    return createHmac('sha256', this.#key).update(`${purpose}\0${payload}`).digest('base64url');
  }
}

function cookie(value: string, maxAge: number, secure = false): string {
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${secure ? '; Secure' : ''}`;
}

function macEquals(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The value of cookie `name` in a Cookie header, or undefined. */
function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
