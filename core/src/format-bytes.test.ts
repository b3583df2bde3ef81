import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, formatBytesOf } from './format-bytes.ts';

describe('formatBytes', () => {
  it('uses binary prefixes with three significant digits, whole bytes below 1 KiB', () => {
    const cases: Array<[number, string]> = [
      [0, '0 B'],
      [1, '1 B'],
      [1023, '1023 B'],
      [1024, '1.00 KiB'],
      [30_000, '29.3 KiB'],
      [200 * 1024, '200 KiB'],
      [1024 * 1024, '1.00 MiB'],
      [1.5 * 1024 * 1024, '1.50 MiB'],
      [200_000_000, '191 MiB'],
      [3 * 1024 ** 3, '3.00 GiB'],
      [5 * 1024 ** 4, '5.00 TiB'],
    ];
    for (const [n, text] of cases) assert.equal(formatBytes(n), text, String(n));
  });
});

describe('formatBytesOf', () => {
  it('shows a small image in KiB, not as 0.0/0.0', () => {
    assert.equal(formatBytesOf(12 * 1024, 30_000), '12.0/29.3 KiB');
  });

  it('puts done in the unit of the total', () => {
    assert.equal(formatBytesOf(512 * 1024, 2 * 1024 * 1024), '0.50/2.00 MiB');
    assert.equal(formatBytesOf(0, 200_000_000), '0/191 MiB');
    assert.equal(formatBytesOf(500, 900), '500/900 B');
  });

  it('does not shrink the unit when done overshoots the total', () => {
    assert.equal(formatBytesOf(2048, 1000), '2.00/0.98 KiB');
  });
});
