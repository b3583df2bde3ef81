/** The fields every role's `signed` has: _type, spec_version, version, expires. */
import { MalformedMetadataError } from '../errors.ts';
import { expectInteger, expectString, type JsonObject } from './guard.ts';

export type RoleType = 'root' | 'timestamp' | 'snapshot' | 'targets';
export const TOP_LEVEL_ROLES: readonly RoleType[] = ['root', 'timestamp', 'snapshot', 'targets'];

/** The TUF specification major version this library implements. */
export const SPEC_VERSION = '1.0.31';

const EXPIRES = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$/;

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * The instant of a TUF `expires` (ms since the epoch), or undefined unless it is
 * exactly YYYY-MM-DDTHH:MM:SSZ naming a real UTC second: a calendar date, hours
 * 00-23, no leap second. Date.parse alone normalises `T24:00:00` to the next day
 * and `2030-02-30` to 2 March; Python's datetime (python-tuf) refuses both, and
 * a client must not trust until a date that other clients refuse.
 */
export function parseExpires(expires: string): number | undefined {
  const m = EXPIRES.exec(expires);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const instant = Date.parse(expires);
  return Number.isNaN(instant) ? undefined : instant;
}

export interface SignedCommon {
  version: number;
  specVersion: string;
  expires: string;
}

export function parseCommon(obj: JsonObject, type: RoleType, path: string): SignedCommon {
  const actualType = expectString(obj._type, `${path}._type`);
  if (actualType !== type) throw new MalformedMetadataError(`${path}._type`, `is ${actualType}, expected ${type}`);
  const specVersion = expectString(obj.spec_version, `${path}.spec_version`);
  const parts = specVersion.split('.');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^\d+$/.test(p))) {
    throw new MalformedMetadataError(`${path}.spec_version`, `${specVersion} is not a version`);
  }
  if (parts[0] !== SPEC_VERSION.split('.')[0]) {
    throw new MalformedMetadataError(`${path}.spec_version`, `unsupported major version ${specVersion}`);
  }
  const version = expectInteger(obj.version, `${path}.version`, 1);
  const expires = expectString(obj.expires, `${path}.expires`);
  if (parseExpires(expires) === undefined) {
    throw new MalformedMetadataError(`${path}.expires`, `${expires} is not YYYY-MM-DDTHH:MM:SSZ`);
  }
  return { version, specVersion, expires };
}

export const COMMON_FIELDS = ['_type', 'spec_version', 'version', 'expires'] as const;

/** An `expires` value `seconds` after `now`, at whole seconds. */
export function expiresIn(now: Date, seconds: number): string {
  return new Date(Math.floor(now.getTime() / 1000) * 1000 + seconds * 1000).toISOString().replace('.000Z', 'Z');
}

export abstract class Signed {
  abstract readonly type: RoleType;

  constructor(
    public version: number,
    public expires: string,
    public specVersion: string = SPEC_VERSION,
    public unrecognizedFields: JsonObject = {},
  ) {}

  /**
   * Expired when `now` is at or past `expires` (TUF 5.3.10: "not expired" means
   * now < expires); an `expires` that is not a valid instant counts as expired.
   */
  isExpired(now: Date): boolean {
    // Parsed once per `expires` value: the trusted set asks again for every role it updates.
    if (this.#parsedExpires?.text !== this.expires) this.#parsedExpires = { text: this.expires, instant: parseExpires(this.expires) };
    const expires = this.#parsedExpires.instant;
    return expires === undefined || now.getTime() >= expires;
  }

  #parsedExpires: { text: string; instant: number | undefined } | undefined;

  protected commonJSON(): JsonObject {
    return { _type: this.type, spec_version: this.specVersion, version: this.version, expires: this.expires };
  }

  abstract toJSON(): JsonObject;
}
