/**
 * Which Uptane/TUF attack a refusal means: one table from a typed error (its
 * `code`, the class's stable name, and its fields) to the installation result
 * code the primary reports and the director records as an `attack` security
 * event. The threat names are those of the Uptane Standard 2.1.0 (3.3 and
 * 5.4.4) and the TUF specification 1.0.x ("threat model", client workflow).
 *
 * Invariants:
 * - First matching row wins; the table reads top to bottom.
 * - It takes plain facts (`code`, `fields`), not error instances, so a
 *   persisted failure record and a secondary's wire refusal (`ecuCode`, the
 *   codes of core/src/link/events.ts) map the same way as a live error.
 * - A refusal of remote data that no row names is VERIFICATION_FAILED; a
 *   failure that is not a refusal (transport, install) is no attack.
 *
 * Choices:
 * - Unsigned metadata (a signature threshold not met) is ARBITRARY_SOFTWARE:
 *   signatures by trusted keys are TUF's defence against arbitrary installation,
 *   and key compromise below the threshold is one way to try it. (BAD_SIGNATURE
 *   is already the director's name for a refused manifest signature.)
 * - BadVersionError with an exact version required by a referencing role (a
 *   number: the version timestamp gives snapshot, or snapshot gives a targets
 *   role) is MIX_AND_MATCH; with a floor (`>= N`), or for root (TUF 5.3.5
 *   "check for a rollback attack"), it is METADATA_ROLLBACK.
 * - A length or hash mismatch is MIX_AND_MATCH for a metadata file (it is not
 *   the one timestamp or snapshot lists) and ARBITRARY_SOFTWARE for an image,
 *   unless it has more bytes than signed (ENDLESS_DATA).
 */

/** Installation result codes that report an attack (the director records them as such). */
export const ATTACK_RESULT_CODES = [
  /** A refusal of remote data that no more precise code names (malformed metadata, a bad delegation...). */
  'VERIFICATION_FAILED',
  /** More bytes than a cap or the signed length. */
  'ENDLESS_DATA',
  /** Below the minimum download rate, or not complete by the deadline. */
  'SLOW_RETRIEVAL',
  /** Metadata older than what the device trusts. */
  'METADATA_ROLLBACK',
  /** An image with a lower release counter than the ECU runs. */
  'IMAGE_ROLLBACK',
  /** Expired metadata (TUF freeze attack). */
  'FREEZE',
  /** Metadata files that do not belong together (versions, lengths or hashes differ from what the referencing role lists). */
  'MIX_AND_MATCH',
  /** Data not signed by the trusted keys, or an image other than the signed one. */
  'ARBITRARY_SOFTWARE',
  /** An image for another hardware ID, or for an ECU the device does not have. */
  'WRONG_HARDWARE',
  /** Director metadata signed for another device. */
  'DEVICE_MISMATCH',
] as const;

export type AttackResultCode = (typeof ATTACK_RESULT_CODES)[number];

const ATTACK_CODE_SET: ReadonlySet<string> = new Set(ATTACK_RESULT_CODES);

/** Whether an installation result code reports an attack. */
export function isAttackResultCode(code: string): code is AttackResultCode {
  return ATTACK_CODE_SET.has(code);
}

/** What a failure is, as far as the table needs to know. */
export interface RefusalFacts {
  /** The error's `code` (UpfleetError.code). */
  code: string;
  /** The error's own fields (`role`, `field`, `expected`, `actual`, `ecuCode`...). */
  fields: Readonly<Record<string, unknown>>;
  /** The failure is a refusal of remote data (a RepositoryError, or an ECU's verification refusal). */
  refusal: boolean;
  /** What was refused: metadata (default) or an image's bytes. */
  data?: 'metadata' | 'image';
}

/** A row's outcome: an attack code, null for "no attack", or a function of the facts. */
type Outcome = AttackResultCode | null;
type Row = readonly [when: (f: RefusalFacts) => boolean, outcome: Outcome | ((f: RefusalFacts) => Outcome)];

const field = (f: RefusalFacts): unknown => f.fields.field;
const longerThanSigned = (f: RefusalFacts): boolean => field(f) === 'length' && Number(f.fields.actual) > Number(f.fields.expected);
const exactVersionOfReferencingRole = (f: RefusalFacts): boolean => typeof f.fields.expected === 'number' && f.fields.role !== 'root';

/** Wire codes of an ECU's verification refusal (core/src/link/events.ts ERROR_CODES) and the attack each names. */
const ECU_REFUSALS: ReadonlyMap<string, AttackResultCode> = new Map<string, AttackResultCode>([
  ['METADATA_UNSIGNED', 'ARBITRARY_SOFTWARE'],
  ['METADATA_EXPIRED', 'FREEZE'],
  ['METADATA_ROLLBACK', 'METADATA_ROLLBACK'],
  ['IMAGE_ROLLBACK', 'IMAGE_ROLLBACK'],
  ['HARDWARE_ID_MISMATCH', 'WRONG_HARDWARE'],
  ['IMAGE_MISMATCH', 'ARBITRARY_SOFTWARE'],
  ['LENGTH_MISMATCH', 'ARBITRARY_SOFTWARE'],
  ['HASH_MISMATCH', 'ARBITRARY_SOFTWARE'],
  // TARGET_MISMATCH on the wire does not say which field fired, METADATA_MALFORMED,
  // METADATA_INCOMPLETE and NO_TARGET_FOR_ECU name no attack: VERIFICATION_FAILED.
]);

const ROWS: readonly Row[] = [
  // Transport failures that TUF and Uptane name as attacks.
  [(f) => f.code === 'LENGTH_LIMIT', 'ENDLESS_DATA'],
  [(f) => f.code === 'SLOW_RETRIEVAL', 'SLOW_RETRIEVAL'],
  // Any other failure that is not a refusal of remote data (transport, install, an ECU that is busy).
  [(f) => !f.refusal, null],
  [(f) => f.code === 'METADATA_TOO_LARGE' || f.code === 'IMAGE_TOO_LARGE', 'ENDLESS_DATA'],
  [(f) => f.code === 'LENGTH_OR_HASH_MISMATCH' && longerThanSigned(f), 'ENDLESS_DATA'],
  [(f) => f.code === 'LENGTH_OR_HASH_MISMATCH' && f.data === 'image', 'ARBITRARY_SOFTWARE'],
  [(f) => f.code === 'LENGTH_OR_HASH_MISMATCH', 'MIX_AND_MATCH'],
  [(f) => f.code === 'BAD_VERSION' && exactVersionOfReferencingRole(f), 'MIX_AND_MATCH'],
  [(f) => f.code === 'BAD_VERSION', 'METADATA_ROLLBACK'], // EqualVersionError too (same code)
  [(f) => f.code === 'EXPIRED_METADATA', 'FREEZE'],
  [(f) => f.code === 'UNSIGNED_METADATA', 'ARBITRARY_SOFTWARE'],
  [(f) => f.code === 'TARGET_MISMATCH' && field(f) === 'releaseCounter', 'IMAGE_ROLLBACK'],
  [(f) => f.code === 'TARGET_MISMATCH' && (field(f) === 'hardwareId' || field(f) === 'ecu'), 'WRONG_HARDWARE'],
  [(f) => f.code === 'TARGET_MISMATCH', 'ARBITRARY_SOFTWARE'], // missing, length, hashes
  [(f) => f.code === 'ECU_TARGET' && f.fields.reason === 'hardwareId', 'WRONG_HARDWARE'],
  [(f) => f.code === 'IMAGE_VERIFICATION', 'ARBITRARY_SOFTWARE'],
  [(f) => f.code === 'DEVICE_MISMATCH', 'DEVICE_MISMATCH'],
  [(f) => typeof f.fields.ecuCode === 'string', (f) => ECU_REFUSALS.get(f.fields.ecuCode as string) ?? 'VERIFICATION_FAILED'],
  [() => true, 'VERIFICATION_FAILED'],
];

/**
 * The attack a failure reports, or undefined when it is no attack (a transport
 * failure other than endless data or slow retrieval, an install error, an
 * ECU's refusal that is not about verification).
 */
export function attackCodeFor(f: RefusalFacts): AttackResultCode | undefined {
  const [, outcome] = ROWS.find(([when]) => when(f))!;
  return (typeof outcome === 'function' ? outcome(f) : outcome) ?? undefined;
}
