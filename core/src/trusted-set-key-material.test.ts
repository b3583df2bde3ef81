/**
 * Threshold counting by key material through the trusted set (issue 11, finding 7):
 * a new root of threshold 2 that lists its one key under two keyids, with that
 * key's signature under each, must not be trusted.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TrustedMetadataSet } from './trusted-set.ts';
import { assertThrowsWith, NOW } from './testing/fixtures.ts';
import { Ed25519Signer } from './keys.ts';
import { canonicalize } from './canonical-json.ts';
import { toHex } from './bytes.ts';
import { UnsignedMetadataError } from './errors.ts';
import type { JsonObject } from './metadata/guard.ts';

const signer = Ed25519Signer.generate();
const ALIAS = 'a'.repeat(64);

function rootBytes(version: number, keyids: string[], threshold: number): Uint8Array {
  const role = { keyids: [signer.keyid], threshold: 1 };
  const signed: JsonObject = {
    _type: 'root',
    spec_version: '1.0.31',
    version,
    expires: '2031-01-01T00:00:00Z',
    consistent_snapshot: true,
    keys: Object.fromEntries(keyids.map((id) => [id, signer.key.toJSON()])),
    roles: { root: { keyids, threshold }, timestamp: role, snapshot: role, targets: role },
  };
  const sig = toHex(signer.sign(canonicalize(signed)));
  return canonicalize({ signed, signatures: keyids.map((keyid) => ({ keyid, sig })) });
}

describe('TrustedMetadataSet', () => {
  describe('when a root lists one key under two keyids to reach threshold 2', () => {
    it('refuses it as trusted root with UnsignedMetadataError', () => {
      assertThrowsWith(() => new TrustedMetadataSet(rootBytes(1, [signer.keyid, ALIAS], 2), NOW), UnsignedMetadataError, {
        role: 'root',
        threshold: 2,
        validSignatures: 1,
      });
    });

    it('refuses it as the next root, and keeps the trusted one', () => {
      const set = new TrustedMetadataSet(rootBytes(1, [signer.keyid], 1), NOW);
      assertThrowsWith(() => set.updateRoot(rootBytes(2, [signer.keyid, ALIAS], 2)), UnsignedMetadataError, {
        role: 'root',
        threshold: 2,
        validSignatures: 1,
      });
      assert.equal(set.root.version, 1);
    });
  });
});
