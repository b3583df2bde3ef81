import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalString, canonicalStringWithParts, canonicalize } from './canonical-json.ts';
import { CanonicalJsonError } from './errors.ts';
import { fromUtf8 } from './bytes.ts';

describe('canonicalString', () => {
  it('sorts object keys and drops whitespace, recursively', () => {
    assert.equal(canonicalString({ b: 1, a: { d: [3, { z: true, y: null }], c: 'x' } }), '{"a":{"c":"x","d":[3,{"y":null,"z":true}]},"b":1}');
  });

  it('escapes only the quote and the backslash, leaving control characters and unicode raw', () => {
    assert.equal(canonicalString('a"b\\c\n\t\u0001é€😀'), '"a\\"b\\\\c\n\t\u0001é€😀"');
  });

  it('writes integers plainly, negative zero as 0', () => {
    assert.equal(canonicalString([0, -0, -17, 9007199254740991]), '[0,0,-17,9007199254740991]');
  });

  it('encodes the same as securesystemslib for a TUF-like document', () => {
    const doc = { signed: { _type: 'targets', version: 2, targets: { 'a b/c.bin': { length: 3, hashes: { sha256: 'ab' } } } }, signatures: [] };
    assert.equal(
      fromUtf8(canonicalize(doc)),
      '{"signatures":[],"signed":{"_type":"targets","targets":{"a b/c.bin":{"hashes":{"sha256":"ab"},"length":3}},"version":2}}',
    );
  });

  for (const [name, value, path] of [
    ['a float', { a: 1.5 }, '$.a'],
    ['NaN', [NaN], '$[0]'],
    ['Infinity', { x: { y: Infinity } }, '$.x.y'],
    ['an unsafe integer', 2 ** 53, '$'],
    ['undefined in an object', { a: undefined }, '$.a'],
    ['undefined in an array', [undefined], '$[0]'],
    ['a function', { f: () => 1 }, '$.f'],
    ['a bigint', 1n, '$'],
    ['a symbol', Symbol('s'), '$'],
  ] as const) {
    describe(`when given ${name}`, () => {
      it('throws CanonicalJsonError naming the path', () => {
        assert.throws(() => canonicalString(value), (e: unknown) => e instanceof CanonicalJsonError && e.path === path);
      });
    });
  }

  describe('when given a cycle', () => {
    it('throws CanonicalJsonError', () => {
      const a: Record<string, unknown> = {};
      a.self = a;
      assert.throws(() => canonicalString(a), CanonicalJsonError);
    });
  });

  describe('key order', () => {
    // U+FF21 (one UTF-16 unit, 0xFF21) and U+1F600 (the pair 0xD83D 0xDE00): UTF-16 order puts
    // the astral key first, code-point order (Python's, so securesystemslib's) puts it last.
    it('sorts by code point, not by UTF-16 unit', () => {
      assert.equal(canonicalString({ '\u{1F600}': 2, '\uFF21': 1 }), '{"\uFF21":1,"\u{1F600}":2}');
      assert.equal(canonicalString({ 'a\u{10000}': 2, 'a\uE000': 1, 'a\uD7FF': 0 }), '{"a\uD7FF":0,"a\uE000":1,"a\u{10000}":2}');
    });

    it('matches the byte order of the UTF-8 encodings (the order securesystemslib writes)', () => {
      const keys = ['\u{1F600}', '\uFF21', 'z', '\u00e9', '\u{10FFFF}', '\uFFFF', '\uD7FF', 'a\u{1F600}', 'a'];
      const byUtf8 = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      const doc = Object.fromEntries(keys.map((k) => [k, 0]));
      assert.equal(canonicalString(doc), `{${byUtf8.map((k) => `"${k}":0`).join(',')}}`);
    });
  });

  describe('when a string has a lone surrogate', () => {
    // Encoded as UTF-8 each would become U+FFFD: different texts, the same signed bytes.
    for (const [name, value, path] of [
      ['a high surrogate alone', { a: '\uD800' }, '$.a'],
      ['a high surrogate at the end', ['ok\uDBFF'], '$[0]'],
      ['a low surrogate alone', { a: { b: 'x\uDC00y' } }, '$.a.b'],
      ['two low-high surrogates reversed', { a: '\uDE00\uD83D' }, '$.a'],
      ['a key with a lone surrogate', { ['\uD83D']: 1 }, '$.\uD83D'],
    ] as const) {
      it(`throws CanonicalJsonError for ${name}`, () => {
        assert.throws(() => canonicalString(value), (e: unknown) => e instanceof CanonicalJsonError && e.path === path);
      });
    }

    it('still encodes a proper surrogate pair', () => {
      assert.equal(fromUtf8(canonicalize({ k: '\uD83D\uDE00' })), '{"k":"\u{1F600}"}');
    });
  });

  it('encodes a shared (non-cyclic) object twice', () => {
    const shared = { k: 1 };
    assert.equal(canonicalString([shared, shared]), '[{"k":1},{"k":1}]');
  });
});

describe('canonicalStringWithParts', () => {
  // Keys and strings where code-point order differs from UTF-16 order, escapes, control
  // characters, an empty key: a part's text must be exactly its own canonical form.
  const part = (n: number) => ({ '😀': n, '\uE000': 'x"y\\z', '': [n, { b: 'é\n', a: null }], z: { '\u0001': true } });
  const parts = [part(1), part(2), part(3)];
  const doc = { '😀 serial': parts[0], 'a"b': parts[1], nested: [{ deeper: parts[2] }], '\uFFFF': 'last', counter: 7 };

  it('gives the same text as canonicalString for the whole and for each part', () => {
    const { text, parts: texts } = canonicalStringWithParts(doc, parts);
    assert.equal(text, canonicalString(doc));
    assert.equal(texts.size, parts.length);
    for (const p of parts) {
      assert.equal(texts.get(p), canonicalString(p));
      assert.ok(text.includes(texts.get(p)!), 'the part is spliced into the whole as is');
    }
  });

  it('has no text for an object that is not inside the value', () => {
    const outside = part(9);
    assert.equal(canonicalStringWithParts(doc, [outside]).parts.has(outside), false);
  });

  it('refuses what canonicalString refuses, with the same path', () => {
    const bad = { ok: parts[0], r: { nonce: 'a\uD800b' } };
    assert.throws(() => canonicalStringWithParts(bad, [bad.r]), (e: unknown) => e instanceof CanonicalJsonError && e.path === '$.r.nonce');
  });
});
