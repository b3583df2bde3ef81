/**
 * How the agent reports a failure to the director (reportFor): the result code
 * and whether the same director targets may be tried again. Failures are built
 * from the real typed errors by the state machine's own failureRecord, so the
 * fields are those the checks throw. The end-to-end cases are in test/attacks.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  BadVersionError,
  DeviceMismatchError,
  DeadlineExceededError,
  DownloadError,
  ExpiredMetadataError,
  HttpError,
  LengthLimitError,
  LengthOrHashMismatchError,
  SlowRetrievalError,
  TargetMismatchError,
  UnsignedMetadataError,
  isAttackResultCode,
} from '@upfleet/core';
import { EcuRefusedError } from '@upfleet/core/link/errors.ts';
import { reportFor } from './cycle.ts';
import { InstallError } from './errors.ts';
import { failureRecord } from './machine/transitions.ts';
import type { StateName } from './machine/states.ts';

describe('reportFor', () => {
  const cases: Array<[string, Error, StateName, string, boolean]> = [
    ['endless data', new LengthLimitError('u', 10, 11), 'checkingImages', 'ENDLESS_DATA', false],
    ['an image longer than signed', new LengthOrHashMismatchError('fw.bin', 'length', 10, 11), 'downloading', 'ENDLESS_DATA', false],
    ['slow retrieval (retried: a bad link looks the same)', new SlowRetrievalError('u', 1, 10), 'downloading', 'SLOW_RETRIEVAL', true],
    ['a deadline passed', new DeadlineExceededError('u', 1000, 2), 'checkingDirector', 'SLOW_RETRIEVAL', true],
    // A short image or a wrong hash is an image other than the signed one, not endless data.
    ['a short image', new LengthOrHashMismatchError('fw.bin', 'length', 10, 9), 'downloading', 'ARBITRARY_SOFTWARE', false],
    ['an image hash other than signed', new LengthOrHashMismatchError('fw.bin', 'sha256', 'aa', 'bb'), 'downloading', 'ARBITRARY_SOFTWARE', false],
    ['a snapshot other than the timestamp lists', new LengthOrHashMismatchError('snapshot', 'sha256', 'aa', 'bb'), 'checkingImages', 'MIX_AND_MATCH', false],
    ['a rolled-back timestamp', new BadVersionError('timestamp', '>= 5', 4), 'checkingDirector', 'METADATA_ROLLBACK', false],
    ['a frozen timestamp', new ExpiredMetadataError('timestamp', '2020-01-01T00:00:00Z', new Date()), 'checkingImages', 'FREEZE', false],
    ['unsigned metadata', new UnsignedMetadataError('targets', 1, 0), 'checkingImages', 'ARBITRARY_SOFTWARE', false],
    ['a lower release counter', new TargetMismatchError('fw.bin', 'releaseCounter', '>= 2', 1), 'checkingImages', 'IMAGE_ROLLBACK', false],
    ['another ECU hardware', new TargetMismatchError('fw.bin', 'hardwareId', 'brake', 'door'), 'checkingDirector', 'WRONG_HARDWARE', false],
    ['targets for another device', new DeviceMismatchError('targets', 'car-1', 'car-2'), 'checkingDirector', 'DEVICE_MISMATCH', false],
    ["a secondary's expired-metadata refusal", new EcuRefusedError('ecu-1', 'put metadata', 'METADATA_EXPIRED', ''), 'installing', 'FREEZE', false],
    ['a busy secondary', new EcuRefusedError('ecu-1', 'image begin', 'BUSY', ''), 'installing', 'INSTALL_FAILED', false],
    ['HTTP 503', new HttpError('u', 503), 'downloading', 'DOWNLOAD_FAILED', true],
    ['connection refused', new DownloadError('refused'), 'checkingImages', 'DOWNLOAD_FAILED', true],
    ['an install handler failure', new InstallError('gw', 'install', 'exit 1'), 'installing', 'INSTALL_FAILED', false],
  ];
  for (const [what, error, state, code, retryable] of cases) {
    it(`${what}: ${error.name} in ${state} -> ${code}`, () => {
      assert.deepEqual(reportFor(failureRecord(error, state)), { code, retryable, attack: isAttackResultCode(code) });
    });
  }
});
