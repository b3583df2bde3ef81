/**
 * The ECU version report (Uptane 5.4.2.1.1): what one ECU has installed, signed
 * with that ECU's own key, bound to the primary's nonce for this cycle and to
 * the time the ECU signed it, so it cannot be replayed into a later manifest:
 * - the primary checks each report it collects is the one it asked for (the
 *   ECU's serial, this cycle's nonce: `checkEcuReport`);
 * - the director refuses a report signed too long ago, or whose nonce it has
 *   seen from that ECU within its window (director/src/report-memory.ts).
 */
import { MalformedMetadataError, RepositoryError } from '../errors.ts';
import type { Key, Signer } from '../keys.ts';
import { expectHashes, expectInteger, expectObject, expectString, expectTime, type JsonObject } from '../metadata/guard.ts';
import { parseEnvelope, signDocument, verifyDocument, type CanonicalBytes, type SignedDocument } from './signed-document.ts';
import type { InstalledImage } from './installed-image.ts';

export type { InstalledImage };

export interface EcuVersionReport {
  ecuSerial: string;
  hardwareId: string;
  installedImage: InstalledImage;
  /** Uptane release counter of the installed image (0 when none). */
  releaseCounter: number;
  /** The primary's nonce for this cycle. */
  nonce: string;
  /** Empty when none; otherwise what the ECU refused and why. */
  attacksDetected: string;
  /** The latest time the ECU verified metadata, ISO 8601 (Uptane 5.4.2.1.1). */
  latestVerifiedTime: string;
  /**
   * When the ECU signed this report, by its own clock, ISO 8601 UTC. Unlike
   * latestVerifiedTime (which stays put while nothing is verified) it is new in
   * every report, so the director can refuse an old one.
   */
  timestamp: string;
}

/** A collected report that is not the one the primary asked for (another ECU's, or an old nonce). */
export class EcuReportMismatchError extends RepositoryError {
  override name = 'EcuReportMismatchError';
  override readonly code = 'ECU_REPORT_MISMATCH';
  constructor(
    /** The ECU that was asked. */
    readonly ecuSerial: string,
    readonly field: 'ecuSerial' | 'nonce',
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`the report from ECU ${ecuSerial} has ${field} ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
  }
}

export type SignedEcuReport = SignedDocument<EcuVersionReport>;

export function signEcuReport(report: EcuVersionReport, signer: Signer): SignedEcuReport {
  return signDocument(report, signer);
}

export function parseInstalledImage(json: unknown, path: string): InstalledImage {
  const obj = expectObject(json, path);
  return {
    filename: expectString(obj.filename, `${path}.filename`),
    length: expectInteger(obj.length, `${path}.length`, 0),
    hashes: expectHashes(obj.hashes, `${path}.hashes`),
  };
}

/** @throws MalformedMetadataError */
export function parseEcuReport(json: unknown, path = 'ecuReport'): SignedEcuReport {
  const { signed, signatures } = parseEnvelope(json, path);
  const p = `${path}.signed`;
  const report: EcuVersionReport = {
    ecuSerial: expectString(signed.ecuSerial, `${p}.ecuSerial`),
    hardwareId: expectString(signed.hardwareId, `${p}.hardwareId`),
    installedImage: parseInstalledImage(signed.installedImage, `${p}.installedImage`),
    releaseCounter: expectInteger(signed.releaseCounter, `${p}.releaseCounter`, 0),
    nonce: expectString(signed.nonce, `${p}.nonce`),
    attacksDetected: expectString(signed.attacksDetected, `${p}.attacksDetected`),
    latestVerifiedTime: expectString(signed.latestVerifiedTime, `${p}.latestVerifiedTime`),
    timestamp: expectTime(signed.timestamp, `${p}.timestamp`),
  };
  const extra = Object.keys(signed).filter((k) => !(k in report));
  if (extra.length > 0) throw new MalformedMetadataError(p, `unknown field ${extra[0]}`);
  return { signed: report, signatures };
}

/** `known`: the report's canonical bytes when its manifest's were encoded (canonicalManifest). @throws BadDocumentSignatureError */
export function verifyEcuReport(report: SignedEcuReport, ecuKey: Key, known?: CanonicalBytes): void {
  verifyDocument(`ECU report of ${report.signed.ecuSerial}`, report as SignedDocument<unknown>, ecuKey, known);
}

export type { JsonObject };

/**
 * The primary's check of a report it collected (Uptane 5.4.2.1.1: the report
 * carries the nonce the primary sent): it is from the ECU asked, for this
 * cycle's nonce. A secondary answering with another ECU's report or an old
 * one (a replay) is refused. Returns the report.
 * @throws EcuReportMismatchError
 */
export function checkEcuReport(report: SignedEcuReport, asked: { ecuSerial: string; nonce: string }): SignedEcuReport {
  const s = report.signed;
  if (s.ecuSerial !== asked.ecuSerial) throw new EcuReportMismatchError(asked.ecuSerial, 'ecuSerial', asked.ecuSerial, s.ecuSerial);
  if (s.nonce !== asked.nonce) throw new EcuReportMismatchError(asked.ecuSerial, 'nonce', asked.nonce, s.nonce);
  return report;
}
