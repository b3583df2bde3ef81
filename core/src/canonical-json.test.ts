import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalString, canonicalize } from './canonical-json.ts';
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

  it('encodes a shared (non-cyclic) object twice', () => {
    const shared = { k: 1 };
    assert.equal(canonicalString([shared, shared]), '[{"k":1},{"k":1}]');
  });
});
