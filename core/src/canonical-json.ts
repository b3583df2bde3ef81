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
 * Why a value cannot be encoded; each level it passes through adds its segment,
 * so the path is only built when something fails (most calls never do).
 */
class Refusal {
  readonly segments: string[] = [];
  constructor(readonly reason: string) {}
}

function encodeString(s: string): string {
  if (!isWellFormed.call(s)) throw new Refusal('a string with a lone surrogate has no UTF-8 encoding');
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

/**
 * The objects whose text an encoding records as it passes them (canonicalStringWithParts),
 * and what it recorded.
 */
interface Capture {
  parts: ReadonlySet<object>;
  texts: Map<object, string>;
}

function encodeValue(value: unknown, seen: Set<object>, capture?: Capture): string {
  switch (typeof value) {
    case 'string':
      return encodeString(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(value)) throw new Refusal(`${value} is not a safe integer`);
      return value === 0 ? '0' : String(value);
    case 'object': {
      if (value === null) return 'null';
      if (seen.has(value)) throw new Refusal('cycle');
      seen.add(value);
      let out: string;
      if (Array.isArray(value)) {
        out = '[';
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ',';
          out += within(i, value[i], seen, false, capture);
        }
        out += ']';
      } else {
        const obj = value as Record<string, unknown>;
        out = '{';
        let first = true;
        for (const key of sortedKeys(obj)) {
          if (!first) out += ',';
          first = false;
          out += within(key, key, seen, true) + ':' + within(key, obj[key], seen, false, capture);
        }
        out += '}';
      }
      seen.delete(value);
      if (capture?.parts.has(value)) capture.texts.set(value, out);
      return out;
    }
    case 'undefined':
      throw new Refusal('undefined');
    default:
      throw new Refusal(`cannot encode a ${typeof value}`);
  }
}

/**
 * encodeValue (or encodeString, for a key) of the member at `at` (an array index
 * or an object key), adding it to the path of a refusal from inside.
 */
function within(at: number | string, value: unknown, seen: Set<object>, isKey = false, capture?: Capture): string {
  try {
    return isKey ? encodeString(value as string) : encodeValue(value, seen, capture);
  } catch (e) {
    if (e instanceof Refusal) e.segments.push(typeof at === 'number' ? `[${at}]` : `.${at}`);
    throw e;
  }
}

/** Canonical JSON text. @throws CanonicalJsonError for values it cannot encode. */
export function canonicalString(value: unknown): string {
  return refusing(() => encodeValue(value, new Set()));
}

/**
 * Canonical JSON text of `value` and, from the same pass, of each of `parts` found inside it
 * (an object's text does not depend on where it sits, so its text within `value` is its own
 * canonical text). For a document that embeds signed documents (a vehicle manifest and its
 * ECU reports): every signed part is encoded once. A part not inside `value` has no text.
 * @throws CanonicalJsonError
 */
export function canonicalStringWithParts(value: unknown, parts: Iterable<object>): { text: string; parts: Map<object, string> } {
  const capture: Capture = { parts: new Set(parts), texts: new Map() };
  const text = refusing(() => encodeValue(value, new Set(), capture));
  return { text, parts: capture.texts };
}

function refusing(encode: () => string): string {
  try {
    return encode();
  } catch (e) {
    if (e instanceof Refusal) throw new CanonicalJsonError(`$${e.segments.reverse().join('')}`, e.reason);
    throw e;
  }
}

/** Canonical JSON as UTF-8 bytes, the input to signing. @throws CanonicalJsonError */
export function canonicalize(value: unknown): Uint8Array {
  return utf8(canonicalString(value));
}
