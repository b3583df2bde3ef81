/**
 * OLPC canonical JSON, the encoding TUF signs (as securesystemslib encodes it):
 * no whitespace, object keys sorted by Unicode code point (Python's string
 * order, not JavaScript's UTF-16 order), strings escape only `"` and `\`,
 * integers only. Anything else (floats, undefined, functions, cycles, strings
 * with a lone surrogate) is refused rather than silently encoded differently
 * from other implementations: UTF-8 encoding would turn every lone surrogate
 * into U+FFFD, so two different texts would share one signature.
 */
import { CanonicalJsonError } from './errors.ts';
import { utf8 } from './bytes.ts';

const NEEDS_ESCAPE = /["\\]/;
const ESCAPE_ALL = /["\\]/g;

/** String.prototype.isWellFormed (ES2024, in Node 20): false when a surrogate is unpaired. */
const isWellFormed = (String.prototype as unknown as { isWellFormed(this: string): boolean }).isWellFormed;

/**
 * Where the encoder is: keys and indexes from the root. The error path text is built
 * from it only when something is refused, not for every value encoded.
 */
type At = Array<string | number>;

function pathText(at: At): string {
  let out = '$';
  for (const step of at) out += typeof step === 'number' ? `[${step}]` : `.${step}`;
  return out;
}

function encodeString(s: string, at: At): string {
  if (!isWellFormed.call(s)) throw new CanonicalJsonError(pathText(at), 'a string with a lone surrogate has no UTF-8 encoding');
  return NEEDS_ESCAPE.test(s) ? `"${s.replace(ESCAPE_ALL, '\\$&')}"` : `"${s}"`;
}

/**
 * Orders UTF-16 code units as their code points order: surrogates (which encode
 * U+10000 and above) after U+E000..U+FFFF. Exact once lone surrogates are refused.
 */
function codePointRank(unit: number): number {
  if (unit >= 0xe000) return unit - 0x800;
  if (unit >= 0xd800) return unit + 0x2000;
  return unit;
}

function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

const SURROGATE = /[\uD800-\uDFFF]/;

/**
 * Keys in code-point order, as securesystemslib (Python's `sorted`) writes them.
 * UTF-16 order is the same unless a key holds a character above U+FFFF, so the
 * slower comparison runs only then.
 */
function sortedKeys(obj: object): string[] {
  const keys = Object.keys(obj).sort();
  return keys.some((k) => SURROGATE.test(k)) ? keys.sort(compareCodePoints) : keys;
}

function encodeValue(value: unknown, at: At, seen: Set<object>): string {
  switch (typeof value) {
    case 'string':
      return encodeString(value, at);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(value)) throw new CanonicalJsonError(pathText(at), `${value} is not a safe integer`);
      return value === 0 ? '0' : String(value);
    case 'object': {
      if (value === null) return 'null';
      if (seen.has(value)) throw new CanonicalJsonError(pathText(at), 'cycle');
      seen.add(value);
      let out: string;
      if (Array.isArray(value)) {
        out = '[';
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ',';
          at.push(i);
          out += encodeValue(value[i], at, seen);
          at.pop();
        }
        out += ']';
      } else {
        const obj = value as Record<string, unknown>;
        const keys = sortedKeys(obj);
        out = '{';
        let first = true;
        for (const key of keys) {
          const v = obj[key];
          at.push(key);
          if (v === undefined) throw new CanonicalJsonError(pathText(at), 'undefined');
          if (!first) out += ',';
          first = false;
          out += encodeString(key, at) + ':' + encodeValue(v, at, seen);
          at.pop();
        }
        out += '}';
      }
      seen.delete(value);
      return out;
    }
    default:
      throw new CanonicalJsonError(pathText(at), `cannot encode a ${typeof value}`);
  }
}

/** Canonical JSON text. @throws CanonicalJsonError for values it cannot encode. */
export function canonicalString(value: unknown): string {
  return encodeValue(value, [], new Set());
}

/** Canonical JSON as UTF-8 bytes, the input to signing. @throws CanonicalJsonError */
export function canonicalize(value: unknown): Uint8Array {
  return utf8(canonicalString(value));
}
