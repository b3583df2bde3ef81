/**
 * Test fixtures shared by the trusted-set and updater tests: a small repository
 * (top-level roles plus delegations role1 -> role2, role1 covering `a/*`), the
 * reference times, and `resign(role, mutate)` to forge a properly signed variant
 * of any committed role, so that a test trips exactly one check.
 */
import assert from 'node:assert/strict';
import { RepositoryBuilder } from '../repository.ts';
import { Metadata, type AnySigned } from '../metadata/envelope.ts';
import type { KeyObject } from 'node:crypto';
import type { Signer } from '../keys.ts';
import { utf8 } from '../bytes.ts';

/** When the fixture repository was signed. */
export const SIGNED_AT = new Date('2030-01-01T00:00:00Z');
/** The client's reference time: an hour later, everything still valid. */
export const NOW = new Date('2030-01-01T01:00:00Z');

export interface Fixture {
  repo: RepositoryBuilder;
  /** The committed bytes of a role (root: the newest version). */
  bytes(role: string): Uint8Array;
  /**
   * A copy of the committed role, changed by `mutate` and signed again by the
   * role's signers (or `signers`). Nothing in the repository changes.
   */
  resign(role: string, mutate: (signed: AnySigned) => void, signers?: Signer[]): Uint8Array;
}

export function fixture(): Fixture {
  const repo = new RepositoryBuilder({ now: SIGNED_AT });
  repo.addTarget('top.bin', utf8('top-level target'));
  repo.delegate('targets', { name: 'role1', paths: ['a/*'] });
  repo.delegate('role1', { name: 'role2', paths: ['a/deep/*'] });
  repo.addTarget('a/one.bin', utf8('delegated target'), { role: 'role1' });
  repo.addTarget('a/deep/two.bin', utf8('nested target'), { role: 'role2' });
  repo.commit();
  return {
    repo,
    bytes: (role) => repo.bytes(role),
    resign(role, mutate, signers = repo.signersOf(role)) {
      const md = Metadata.fromBytes(repo.bytes(role));
      mutate(md.signed);
      md.signatures.clear();
      for (const s of signers) md.sign(s);
      return md.toBytes();
    },
  };
}

/**
 * Asserts `fn` throws an instance of `type` whose fields include `fields`
 * (so a test aimed at one check cannot pass on another).
 */
export function assertThrowsWith<E extends Error>(fn: () => unknown, type: new (...args: never[]) => E, fields: Partial<Record<keyof E, unknown>> = {}): E {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assertError(caught, type, fields);
  return caught as E;
}

export async function assertRejectsWith<E extends Error>(fn: () => Promise<unknown>, type: new (...args: never[]) => E, fields: Partial<Record<keyof E, unknown>> = {}): Promise<E> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  assertError(caught, type, fields);
  return caught as E;
}

function assertError(caught: unknown, type: new (...args: never[]) => Error, fields: Record<string, unknown>): void {
  assert.ok(caught instanceof type, `expected ${type.name}, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`);
  for (const [k, v] of Object.entries(fields)) assert.deepEqual((caught as unknown as Record<string, unknown>)[k], v, `field ${k}`);
}

/** The SPKI PEM of a P-256 public key with its point compressed (node:crypto exports it uncompressed). */
export function compressedP256Pem(publicKey: KeyObject): string {
  const { x, y } = publicKey.export({ format: 'jwk' });
  const prefix = Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex');
  const der = Buffer.concat([prefix, Buffer.from([2 + (Buffer.from(y!, 'base64url')[31]! & 1)]), Buffer.from(x!, 'base64url')]);
  return `-----BEGIN PUBLIC KEY-----\n${der.toString('base64')}\n-----END PUBLIC KEY-----\n`;
}
