/** The fields every role's `signed` has: _type, spec_version, version, expires. */
import { MalformedMetadataError } from '../errors.ts';
import { expectInteger, expectString, type JsonObject } from './guard.ts';

export type RoleType = 'root' | 'timestamp' | 'snapshot' | 'targets';
export const TOP_LEVEL_ROLES: readonly RoleType[] = ['root', 'timestamp', 'snapshot', 'targets'];

/** The TUF specification major version this library implements. */
export const SPEC_VERSION = '1.0.31';

const EXPIRES = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

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
  if (!EXPIRES.test(expires) || Number.isNaN(Date.parse(expires))) {
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

  /** Expired when `now` is at or past `expires` (TUF 5.3.10: "not expired" means now < expires). */
  isExpired(now: Date): boolean {
    return now.getTime() >= Date.parse(this.expires);
  }

  protected commonJSON(): JsonObject {
    return { _type: this.type, spec_version: this.specVersion, version: this.version, expires: this.expires };
  }

  abstract toJSON(): JsonObject;
}
