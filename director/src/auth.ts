/**
 * Who is calling: a device (its signed token) or a provisioning client (the
 * fleet provisioning token); admin callers are checked by http/admin-access.ts
 * (admin and viewer tokens, console sessions). Device tokens that verified
 * are cached until they expire, so a device reusing its token costs one
 * signature check per token, not per request; the cache is dropped when it grows
 * past its bound. Secrets compare in constant time.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import { Key } from '@upfleet/core';
import { checkDeviceToken, parseDeviceToken } from '@upfleet/core';
import { ForbiddenError, UnauthenticatedError } from './errors.ts';
import { KeyCache } from './manifest-checks.ts';
import type { DirectorStore } from './store.ts';

const CACHE_LIMIT = 100_000;

export function secretEquals(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The token after `scheme ` in an Authorization header, or undefined. */
export function bearer(header: string | undefined, scheme: string): string | undefined {
  if (!header) return undefined;
  const space = header.indexOf(' ');
  if (space < 0 || header.slice(0, space).toLowerCase() !== scheme.toLowerCase()) return undefined;
  return header.slice(space + 1).trim();
}

export class Authenticator {
  /** token -> who it proved, and with which primary key (its JSON, to notice a replaced key). */
  #verified = new Map<string, { deviceId: string; expires: number; keyJson: string }>();

  constructor(
    private readonly store: DirectorStore,
    private readonly adminToken: string,
    private readonly provisioningToken: string,
    private readonly nowSeconds: () => number,
  ) {}

  isAdminSecret(secret: string): boolean {
    return secretEquals(secret, this.adminToken);
  }

  /** @throws UnauthenticatedError (401: no bearer token), ForbiddenError WRONG_PROVISIONING_TOKEN (403: another token) */
  provisioning(header: string | undefined): void {
    const token = bearer(header, 'Bearer');
    if (!token) throw new UnauthenticatedError('no provisioning token: send Authorization: Bearer <provisioning token>');
    if (!secretEquals(token, this.provisioningToken)) throw new ForbiddenError('WRONG_PROVISIONING_TOKEN', 'the bearer token is not the fleet provisioning token');
  }

  /**
   * The device a token proves, checked against the device's current primary key.
   * @throws UnauthenticatedError
   */
  async deviceToken(token: string): Promise<string> {
    const now = this.nowSeconds();
    const cached = this.#verified.get(token);
    if (cached && cached.expires >= now - 30 && (await this.#primaryKey(cached.deviceId))?.json === cached.keyJson) return cached.deviceId;
    const parsed = parseDeviceToken(token);
    if (!parsed) throw new UnauthenticatedError('malformed device token');
    const primary = await this.#primaryKey(parsed.deviceId);
    if (!primary) throw new UnauthenticatedError('unknown device');
    const why = checkDeviceToken(parsed, primary.key, now);
    if (why) throw new UnauthenticatedError(why);
    if (this.#verified.size >= CACHE_LIMIT) this.#verified.clear();
    this.#verified.set(token, { deviceId: parsed.deviceId, expires: parsed.expires, keyJson: primary.json });
    return parsed.deviceId;
  }

  /**
   * Authenticates the request's device and checks it is `deviceId`.
   * @throws UnauthenticatedError, ForbiddenError (another device's data)
   */
  async device(header: string | undefined, deviceId: string): Promise<void> {
    const token = bearer(header, 'UpfleetDevice');
    if (!token) throw new UnauthenticatedError('UpfleetDevice token required');
    const caller = await this.deviceToken(token);
    if (caller !== deviceId) throw new ForbiddenError('OTHER_DEVICE', `device ${caller} may not access ${deviceId}`, { caller, deviceId });
  }

  #keys = new KeyCache();

  /** The primary's key; one small read per request (the stored text, compared as is: parsed only when it changed). */
  async #primaryKey(deviceId: string): Promise<{ json: string; key: Key } | undefined> {
    const json = await this.store.primaryKeyJson(deviceId);
    return json === undefined ? undefined : { json, key: this.#keys.fromText(deviceId, json) };
  }
}
