/**
 * Hashing through node:crypto (OpenSSL; about 10x @noble/hashes here).
 * Pure computation: no I/O. Streaming hashers let callers check images chunk by chunk.
 */
import { createHash, type Hash } from 'node:crypto';
import { toHex } from './bytes.ts';

/** The hash algorithms a target or metafile may list; unknown ones are refused. */
export const SUPPORTED_HASHES = ['sha256', 'sha512'] as const;
export type HashAlgorithm = (typeof SUPPORTED_HASHES)[number];

export function isSupportedHash(name: string): name is HashAlgorithm {
  return (SUPPORTED_HASHES as readonly string[]).includes(name);
}

export function digest(algorithm: HashAlgorithm, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash(algorithm).update(data).digest());
}

export function digestHex(algorithm: HashAlgorithm, data: Uint8Array): string {
  return createHash(algorithm).update(data).digest('hex');
}

/** Hashes a stream with several algorithms at once and counts its length. */
export class MultiHasher {
  #hashes: Map<HashAlgorithm, Hash>;
  #length = 0;

  constructor(algorithms: readonly HashAlgorithm[]) {
    this.#hashes = new Map(algorithms.map((a) => [a, createHash(a)]));
  }

  update(chunk: Uint8Array): void {
    this.#length += chunk.byteLength;
    for (const h of this.#hashes.values()) h.update(chunk);
  }

  get length(): number {
    return this.#length;
  }

  /** Hex digests by algorithm; the hasher cannot be used afterwards. */
  digestHex(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, h] of this.#hashes) out[name] = h.digest('hex');
    return out;
  }
}

export { toHex };
