/**
 * The ECU version report (Uptane 5.4.2.1.1): what one ECU has installed, signed
 * with that ECU's own key, bound to the primary's nonce for this cycle so it
 * cannot be replayed into a later manifest.
 */
import { MalformedMetadataError } from '../errors.ts';
import type { Key, Signer } from '../keys.ts';
import { expectHashes, expectInteger, expectObject, expectString, type JsonObject } from '../metadata/guard.ts';
import { parseEnvelope, signDocument, verifyDocument, type SignedDocument } from './signed-document.ts';

export interface InstalledImage {
  filename: string;
  length: number;
  hashes: Record<string, string>;
}

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
  };
  const extra = Object.keys(signed).filter((k) => !(k in report));
  if (extra.length > 0) throw new MalformedMetadataError(p, `unknown field ${extra[0]}`);
  return { signed: report, signatures };
}

/** @throws BadDocumentSignatureError */
export function verifyEcuReport(report: SignedEcuReport, ecuKey: Key): void {
  verifyDocument(`ECU report of ${report.signed.ecuSerial}`, report as SignedDocument<unknown>, ecuKey);
}

export type { JsonObject };
