import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AdminAccess, CSRF_HEADER, SESSION_COOKIE } from './admin-access.ts';
import { BadRequestError, ForbiddenError, UnauthenticatedError } from '../errors.ts';

const ADMIN = 'admin-token-for-access-tests';
const VIEWER = 'viewer-token-for-access-tests';

function access(now = () => 1_000_000, o: { viewerToken?: string; adminToken?: string; sessionSeconds?: number } = {}) {
  return new AdminAccess({ adminToken: o.adminToken ?? ADMIN, viewerToken: o.viewerToken ?? VIEWER, nowSeconds: now, ...(o.sessionSeconds !== undefined && { sessionSeconds: o.sessionSeconds }) });
}

/** The cookie header a browser would send back for a Set-Cookie value. */
function cookieOf(setCookie: string): string {
  return setCookie.split(';')[0]!;
}

function assertThrowsCode(fn: () => unknown, type: new (...a: never[]) => Error, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof type && (e as { code?: string }).code === code);
}

describe('AdminAccess', () => {
  describe('bearer tokens (the CLI)', () => {
    it('makes the admin token an operator and the viewer token a viewer, with no CSRF token needed', () => {
      const a = access();
      assert.equal(a.authorize({ method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } }).role, 'operator');
      assert.equal(a.authorize({ method: 'GET', headers: { authorization: `Bearer ${VIEWER}` } }).role, 'viewer');
    });

    it('refuses every state change by the viewer token (403 READ_ONLY_ROLE)', () => {
      for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
        assertThrowsCode(() => access().authorize({ method, headers: { authorization: `Bearer ${VIEWER}` } }), ForbiddenError, 'READ_ONLY_ROLE');
      }
    });

    it('keeps 401 for no token and 403 WRONG_ADMIN_TOKEN for another one', () => {
      assertThrowsCode(() => access().authorize({ method: 'GET', headers: {} }), UnauthenticatedError, 'UNAUTHENTICATED');
      assertThrowsCode(() => access().authorize({ method: 'GET', headers: { authorization: 'Bearer nope' } }), ForbiddenError, 'WRONG_ADMIN_TOKEN');
    });

    it('has no viewer role without a viewer token', () => {
      const a = new AdminAccess({ adminToken: ADMIN, nowSeconds: () => 0 });
      assertThrowsCode(() => a.authorize({ method: 'GET', headers: { authorization: `Bearer ${VIEWER}` } }), ForbiddenError, 'WRONG_ADMIN_TOKEN');
      assert.throws(() => a.login(VIEWER), UnauthenticatedError);
    });

    it('refuses a viewer token equal to the admin token at start', () => {
      assert.throws(() => new AdminAccess({ adminToken: ADMIN, viewerToken: ADMIN, nowSeconds: () => 0 }), RangeError);
    });
  });

  describe('console sessions', () => {
    it('logs in into an HttpOnly, SameSite=Strict cookie and reads the role back from it', () => {
      const { session, setCookie } = access().login(ADMIN);
      assert.match(setCookie, new RegExp(`^${SESSION_COOKIE}=[^;]+; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200$`));
      assert.equal(session.role, 'operator');
      assert.equal(session.expires, 1_000_000 + 43_200);
      const caller = access().authorize({ method: 'GET', headers: { cookie: `other=1; ${cookieOf(setCookie)}` } });
      assert.deepEqual(caller, { role: 'operator', via: 'session', session });
    });

    it('marks the cookie Secure when the page came over HTTPS', () => {
      assert.match(access().login(ADMIN, { secure: true }).setCookie, /; HttpOnly; SameSite=Strict; Max-Age=43200; Secure$/);
    });

    it('is accepted by another instance built from the same tokens (another director process)', () => {
      const { setCookie, session } = access().login(VIEWER);
      assert.deepEqual(access().session({ cookie: cookieOf(setCookie) }), session);
    });

    it('is refused once either token changed', () => {
      const cookie = cookieOf(access().login(ADMIN).setCookie);
      assert.throws(() => access(undefined, { adminToken: 'rotated-admin-token' }).session({ cookie }), UnauthenticatedError);
      assert.throws(() => access(undefined, { viewerToken: 'rotated-viewer-token' }).session({ cookie }), UnauthenticatedError);
    });

    it('expires', () => {
      let now = 1_000_000;
      const a = access(() => now, { sessionSeconds: 60 });
      const cookie = cookieOf(a.login(ADMIN).setCookie);
      now += 59;
      assert.equal(a.session({ cookie }).role, 'operator');
      now += 1;
      assert.throws(() => a.session({ cookie }), /expired/);
    });

    it('refuses a session whose payload was changed (a viewer making itself operator)', () => {
      const a = access();
      const value = cookieOf(a.login(VIEWER).setCookie).slice(SESSION_COOKIE.length + 1);
      const [payload, mac] = value.split('.') as [string, string];
      const forged = Buffer.from(Buffer.from(payload, 'base64url').toString().replace('"viewer"', '"operator"')).toString('base64url');
      assert.throws(() => a.session({ cookie: `${SESSION_COOKIE}=${forged}.${mac}` }), /not valid/);
      assert.throws(() => a.session({ cookie: `${SESSION_COOKIE}=garbage` }), /not valid/);
    });

    it('needs the CSRF token of this session for a state change, and only then', () => {
      const a = access();
      const first = a.login(ADMIN);
      const second = a.login(ADMIN);
      assert.notEqual(first.session.csrfToken, second.session.csrfToken, 'each session has its own token');
      const cookie = cookieOf(first.setCookie);
      assert.equal(a.authorize({ method: 'GET', headers: { cookie } }).role, 'operator');
      assertThrowsCode(() => a.authorize({ method: 'POST', headers: { cookie } }), ForbiddenError, 'CSRF_TOKEN_MISSING');
      assertThrowsCode(() => a.authorize({ method: 'POST', headers: { cookie, [CSRF_HEADER]: second.session.csrfToken } }), ForbiddenError, 'BAD_CSRF_TOKEN');
      assert.equal(a.authorize({ method: 'POST', headers: { cookie, [CSRF_HEADER]: first.session.csrfToken } }).role, 'operator');
    });

    it('refuses every state change by a viewer session, CSRF token or not', () => {
      const a = access();
      const { setCookie, session } = a.login(VIEWER);
      assertThrowsCode(() => a.authorize({ method: 'POST', headers: { cookie: cookieOf(setCookie), [CSRF_HEADER]: session.csrfToken } }), ForbiddenError, 'READ_ONLY_ROLE');
    });

    it('refuses a login with no token (400) or a wrong one (401)', () => {
      assert.throws(() => access().login(undefined), BadRequestError);
      assert.throws(() => access().login(''), BadRequestError);
      assert.throws(() => access().login('wrong'), UnauthenticatedError);
    });

    it('logs out with the CSRF token only, for either role', () => {
      const a = access();
      const { setCookie, session } = a.login(VIEWER);
      const cookie = cookieOf(setCookie);
      assertThrowsCode(() => a.logout({ cookie }), ForbiddenError, 'CSRF_TOKEN_MISSING');
      assert.match(a.logout({ cookie, [CSRF_HEADER]: session.csrfToken }), /^upfleet_session=; .*Max-Age=0$/);
    });
  });
});
