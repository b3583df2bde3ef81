/**
 * The attack table: each typed error, with the fields the checks throw it
 * with, names its attack; transport and install failures name none.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  BadVersionError,
  DeadlineExceededError,
  DownloadError,
  EqualVersionError,
  ExpiredMetadataError,
  HttpError,
  IncompleteBundleError,
  LengthLimitError,
  LengthOrHashMismatchError,
  MalformedMetadataError,
  MetadataTooLargeError,
  RepositoryError,
  SlowRetrievalError,
  UndelegatedRoleError,
  UnsignedMetadataError,
  UpfleetError,
} from '../errors.ts';
import { EcuRefusedError } from '../link/errors.ts';
import { EcuTargetError, ImageVerificationError } from './ecu-verification.ts';
import { TargetMismatchError } from './matching.ts';
import { ATTACK_RESULT_CODES, attackCodeFor, isAttackResultCode, type RefusalFacts } from './attack-codes.ts';

/** The facts of a live error, as the agent records them (own primitive fields). */
function facts(e: UpfleetError, o: { data?: 'metadata' | 'image'; refusal?: boolean } = {}): RefusalFacts {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) if (k !== 'name' && k !== 'code') fields[k] = v;
  return { code: e.code, fields, refusal: o.refusal ?? e instanceof RepositoryError, ...(o.data && { data: o.data }) };
}

const now = new Date('2030-01-01T00:00:00Z');

describe('attackCodeFor', () => {
  const cases: Array<[string, UpfleetError, { data?: 'metadata' | 'image'; refusal?: boolean }, string | undefined]> = [
    // Metadata rollback: a floor (>= N) the new version is under, an equal version, a root out of sequence.
    ['timestamp older than trusted', new BadVersionError('timestamp', '>= 7', 6), {}, 'METADATA_ROLLBACK'],
    ['snapshot listed older than trusted', new BadVersionError('snapshot', '>= 4', 3), {}, 'METADATA_ROLLBACK'],
    ['targets listed older than trusted', new BadVersionError('targets', '>= 4', 3), {}, 'METADATA_ROLLBACK'],
    ['equal timestamp version', new EqualVersionError('timestamp', 7), {}, 'METADATA_ROLLBACK'],
    ['root out of sequence', new BadVersionError('root', 3, 2), {}, 'METADATA_ROLLBACK'],
    // Mix-and-match: an exact version, length or hash a referencing role gives.
    ['snapshot version other than the timestamp says', new BadVersionError('snapshot', 9, 8), {}, 'MIX_AND_MATCH'],
    ['targets version other than the snapshot says', new BadVersionError('targets', 12, 7), {}, 'MIX_AND_MATCH'],
    ['snapshot hash other than the timestamp says', new LengthOrHashMismatchError('snapshot', 'sha256', 'aa', 'bb'), {}, 'MIX_AND_MATCH'],
    ['role file shorter than the snapshot says', new LengthOrHashMismatchError('targets', 'length', 900, 800), {}, 'MIX_AND_MATCH'],
    // Freeze.
    ['expired timestamp', new ExpiredMetadataError('timestamp', '2029-12-31T00:00:00Z', now), {}, 'FREEZE'],
    ['expired targets', new ExpiredMetadataError('targets', '2029-12-31T00:00:00Z', now), {}, 'FREEZE'],
    // Arbitrary software.
    ['signature threshold not met', new UnsignedMetadataError('timestamp', 1, 0), {}, 'ARBITRARY_SOFTWARE'],
    ['image hash other than signed', new LengthOrHashMismatchError('fw.bin', 'sha256', 'aa', 'bb'), { data: 'image' }, 'ARBITRARY_SOFTWARE'],
    ['image shorter than signed', new LengthOrHashMismatchError('fw.bin', 'length', 10, 9), { data: 'image' }, 'ARBITRARY_SOFTWARE'],
    ['no image repository target', new TargetMismatchError('fw.bin', 'missing', 'an image repository target', 'none'), {}, 'ARBITRARY_SOFTWARE'],
    ['director length other than image repository', new TargetMismatchError('fw.bin', 'length', 10, 11), {}, 'ARBITRARY_SOFTWARE'],
    ['director hash other than image repository', new TargetMismatchError('fw.bin', 'hashes', 'sha256:aa', 'sha256:bb'), {}, 'ARBITRARY_SOFTWARE'],
    ['received image other than the target (secondary)', new ImageVerificationError('fw.bin', 'hashes', 'aa', 'bb'), {}, 'ARBITRARY_SOFTWARE'],
    // Wrong hardware, image rollback (device mismatch: agent/src/cycle.test.ts, where DeviceMismatchError lives).
    ['image for other hardware', new TargetMismatchError('fw.bin', 'hardwareId', 'brake', 'door'), {}, 'WRONG_HARDWARE'],
    ['target for an ECU the device lacks', new TargetMismatchError('fw.bin', 'ecu', 'an ECU of this device', 'x'), {}, 'WRONG_HARDWARE'],
    ['secondary: target for other hardware', new EcuTargetError('ecu-1', 'hardwareId', 'brake, not door'), {}, 'WRONG_HARDWARE'],
    ['lower release counter', new TargetMismatchError('fw.bin', 'releaseCounter', '>= 2', 1), {}, 'IMAGE_ROLLBACK'],
    // Endless data and slow retrieval, transport or signed.
    ['past a cap', new LengthLimitError('u', 10, 11), {}, 'ENDLESS_DATA'],
    ['metadata file past its cap', new MetadataTooLargeError('timestamp', 10, 11), {}, 'ENDLESS_DATA'],
    ['image longer than signed', new LengthOrHashMismatchError('fw.bin', 'length', 10, 11), { data: 'image' }, 'ENDLESS_DATA'],
    ['below the minimum rate', new SlowRetrievalError('u', 1, 10), {}, 'SLOW_RETRIEVAL'],
    ['past the deadline', new DeadlineExceededError('u', 1000, 3), {}, 'SLOW_RETRIEVAL'],
    // Other refusals: VERIFICATION_FAILED.
    ['malformed metadata', new MalformedMetadataError('signed.version', 'not a number'), {}, 'VERIFICATION_FAILED'],
    ['undelegated role', new UndelegatedRoleError('x', 'targets'), {}, 'VERIFICATION_FAILED'],
    ['secondary: no target', new EcuTargetError('ecu-1', 'none', 'no target'), {}, 'VERIFICATION_FAILED'],
    ['secondary: incomplete bundle', new IncompleteBundleError('image', 'snapshot'), {}, 'VERIFICATION_FAILED'],
    // Not attacks.
    ['HTTP 404', new HttpError('u', 404), {}, undefined],
    ['connection refused', new DownloadError('refused'), {}, undefined],
    ['install failure', new UpfleetError('flash failed'), {}, undefined],
  ];
  for (const [what, error, o, code] of cases) {
    it(`${what}: ${error.name} -> ${code ?? 'no attack'}`, () => {
      assert.equal(attackCodeFor(facts(error, o)), code);
    });
  }

  describe("a secondary's refusal (wire codes, core/src/link/events.ts)", () => {
    const wire: Array<[string, boolean, string | undefined]> = [
      ['METADATA_UNSIGNED', true, 'ARBITRARY_SOFTWARE'],
      ['METADATA_EXPIRED', true, 'FREEZE'],
      ['METADATA_ROLLBACK', true, 'METADATA_ROLLBACK'],
      ['HARDWARE_ID_MISMATCH', true, 'WRONG_HARDWARE'],
      ['IMAGE_MISMATCH', true, 'ARBITRARY_SOFTWARE'],
      ['LENGTH_MISMATCH', true, 'ARBITRARY_SOFTWARE'],
      ['HASH_MISMATCH', true, 'ARBITRARY_SOFTWARE'],
      ['TARGET_MISMATCH', true, 'VERIFICATION_FAILED'], // the wire code does not say which field
      ['METADATA_MALFORMED', true, 'VERIFICATION_FAILED'],
      // Not about verification: the agent does not count it as a refusal of data.
      ['BUSY', false, undefined],
      ['LOW_BATTERY', false, undefined],
    ];
    for (const [ecuCode, refusal, code] of wire) {
      it(`${ecuCode} -> ${code ?? 'no attack'}`, () => {
        assert.equal(attackCodeFor(facts(new EcuRefusedError('ecu-1', 'put metadata', ecuCode as never, ''), { refusal })), code);
      });
    }
  });

  it('names only codes of ATTACK_RESULT_CODES', () => {
    for (const c of ATTACK_RESULT_CODES) assert.ok(isAttackResultCode(c));
    assert.ok(!isAttackResultCode('DOWNLOAD_FAILED'));
    assert.ok(!isAttackResultCode('INSTALL_FAILED'));
  });
});
