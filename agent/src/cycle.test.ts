/**
 * How the agent reports a failure to the director (reportFor): the result code
 * and whether the same director targets may be tried again. The end-to-end
 * cases (endless data, slow retrieval, tampered images) are in test/attacks.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ATTACK_RESULT_CODES } from '@upfleet/core';
import { reportFor } from './cycle.ts';
import type { FailureRecord } from './machine/states.ts';

const failure = (code: string, attack: boolean, fields: Record<string, unknown> = {}): FailureRecord =>
  ({ name: 'X', code, message: 'm', state: 'downloading', attack, fields });

describe('reportFor', () => {
  it('reports endless data and slow retrieval as attacks, other transport failures as download failures', () => {
    const cases: Array<[FailureRecord, string, boolean]> = [
      [failure('LENGTH_LIMIT', false, { limit: 10, received: 11 }), 'ENDLESS_DATA', false],
      [failure('LENGTH_OR_HASH_MISMATCH', true, { field: 'length', expected: 10, actual: 11 }), 'ENDLESS_DATA', false],
      [failure('SLOW_RETRIEVAL', false), 'SLOW_RETRIEVAL', true],
      // A short file or a wrong hash is data that does not verify, not endless data.
      [failure('LENGTH_OR_HASH_MISMATCH', true, { field: 'length', expected: 10, actual: 9 }), 'VERIFICATION_FAILED', false],
      [failure('LENGTH_OR_HASH_MISMATCH', true, { field: 'sha256', expected: 'aa', actual: 'bb' }), 'VERIFICATION_FAILED', false],
      [failure('HTTP', false), 'DOWNLOAD_FAILED', true],
      [failure('DOWNLOAD', false), 'DOWNLOAD_FAILED', true],
      [failure('INSTALL', false), 'INSTALL_FAILED', false],
    ];
    for (const [f, code, retryable] of cases) {
      const r = reportFor(f);
      assert.deepEqual(r, { code, retryable, attack: (ATTACK_RESULT_CODES as readonly string[]).includes(code) }, `${f.code} ${JSON.stringify(f.fields)}`);
    }
  });
});
