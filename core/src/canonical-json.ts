/**
 * OLPC canonical JSON, the encoding TUF signs (as securesystemslib encodes it):
 * no whitespace, object keys sorted, strings escape only `"` and `\`, integers
 * only. Anything else (floats, undefined, functions, cycles) is refused rather
 * than silently encoded differently from other implementations.
 */
import { CanonicalJsonError } from './errors.ts';
import { utf8 } from './bytes.ts';

const NEEDS_ESCAPE = /["\\]/;
const ESCAPE_ALL = /["\\]/g;

function encodeString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? `"${s.replace(ESCAPE_ALL, '\\$&')}"` : `"${s}"`;
}

function encodeValue(value: unknown, path: string, seen: Set<object>): string {
  switch (typeof value) {
    case 'string':
      return encodeString(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(value)) throw new CanonicalJsonError(path, `${value} is not a safe integer`);
      return value === 0 ? '0' : String(value);
    case 'object': {
      if (value === null) return 'null';
      if (seen.has(value)) throw new CanonicalJsonError(path, 'cycle');
      seen.add(value);
      let out: string;
      if (Array.isArray(value)) {
        out = '[';
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ',';
          out += encodeValue(value[i], `${path}[${i}]`, seen);
        }
        out += ']';
      } else {
        const obj = value as Record<string, unknown>;
        const keys = Object.keys(obj).sort();
        out = '{';
        let first = true;
        for (const key of keys) {
          const v = obj[key];
          if (v === undefined) throw new CanonicalJsonError(`${path}.${key}`, 'undefined');
          if (!first) out += ',';
          first = false;
          out += encodeString(key) + ':' + encodeValue(v, `${path}.${key}`, seen);
        }
        out += '}';
      }
      seen.delete(value);
      return out;
    }
    default:
      throw new CanonicalJsonError(path, `cannot encode a ${typeof value}`);
  }
}

/** Canonical JSON text. @throws CanonicalJsonError for values it cannot encode. */
export function canonicalString(value: unknown): string {
  return encodeValue(value, '$', new Set());
}

/** Canonical JSON as UTF-8 bytes, the input to signing. @throws CanonicalJsonError */
export function canonicalize(value: unknown): Uint8Array {
  return utf8(canonicalString(value));
}
