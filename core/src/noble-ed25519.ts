/**
 * The pure-JavaScript ed25519 provider (@noble/ed25519), with the strict rule set of
 * keys.ts. A module of its own so that only its users load noble: node:crypto's provider is
 * the default, and a CLI started per step (upfleet-tuf) would pay about 5 ms to load an
 * ES module package it never calls.
 */
import * as noble from '@noble/ed25519';
import { digest } from './hash.ts';
import { bytesEqual, concatBytes } from './bytes.ts';
import { L, littleEndian } from './ed25519-numbers.ts';
import type { Ed25519Provider } from './keys.ts';

noble.hashes.sha512 = (message: Uint8Array) => digest('sha512', message) as Uint8Array<ArrayBuffer>;

export const nobleEd25519: Ed25519Provider = {
  name: '@noble/ed25519',
  publicKey: (seed) => noble.getPublicKey(seed),
  sign: (seed, message) => noble.sign(message, seed),
  verify(publicKey, signature, message) {
    try {
      if (!noble.verify(signature, message, publicKey, { zip215: false })) return false;
      // Cofactorless: R must equal [S]B - [k]A exactly, not only up to a small-order component.
      const r = signature.subarray(0, 32);
      const k = littleEndian(digest('sha512', concatBytes([r, publicKey, message]))) % L;
      const A = noble.Point.fromBytes(publicKey);
      const R = noble.Point.BASE.multiply(littleEndian(signature.subarray(32)), false).subtract(A.multiply(k, false));
      return bytesEqual(R.toBytes(), r);
    } catch {
      return false;
    }
  },
};
