/**
 * The vehicle version manifest (Uptane 5.4.2.1): the primary's signed bundle of
 * every ECU's report plus the last installation result. `counter` rises by one
 * per manifest the device sends, so the director can refuse replays.
 */
import { MalformedMetadataError } from '../errors.ts';
import type { Key, Signer } from '../keys.ts';
import { expectBoolean, expectInteger, expectObject, expectString, expectTime, isObject, nameMap } from '../metadata/guard.ts';
import { parseEcuReport, type SignedEcuReport } from './ecu-report.ts';
import { CanonicalBytes, parseEnvelope, signDocument, verifyDocument, type SignedDocument } from './signed-document.ts';

/**
 * Installation result codes of a failure that the next cycle retries with the
 * same director targets (the agent), so the assignment stays open (the
 * director): a transport failure, or slow retrieval, which a bad link looks
 * like and a network attacker can only delay, not turn into a failed update.
 */
export const RETRYABLE_RESULT_CODES = ['SLOW_RETRIEVAL', 'DOWNLOAD_FAILED'] as const;

export interface EcuInstallResult {
  ecuSerial: string;
  success: boolean;
  /** A stable code such as OK, DOWNLOAD_FAILED, INSTALL_FAILED, or one of ATTACK_RESULT_CODES (attack-codes.ts); RETRYABLE_RESULT_CODES are retried. */
  code: string;
  description: string;
  /** The image this result is about. */
  filename?: string;
}

export interface InstallationResult {
  /** The director targets version this result is about (the assignment it answers). */
  directorTargetsVersion: number;
  success: boolean;
  code: string;
  description: string;
  ecus: EcuInstallResult[];
}

export interface VehicleManifest {
  deviceId: string;
  primaryEcuSerial: string;
  /** ECU serial -> that ECU's signed version report. */
  ecuVersionReports: Record<string, SignedEcuReport>;
  installationResult?: InstallationResult;
  /** Strictly increasing per device; the director refuses one it has seen. */
  counter: number;
  /** When the primary signed it, ISO 8601 UTC; the director refuses ECU reports signed far from it. */
  timestamp: string;
}

export type SignedVehicleManifest = SignedDocument<VehicleManifest>;

export function signVehicleManifest(manifest: VehicleManifest, primary: Signer): SignedVehicleManifest {
  return signDocument(manifest, primary);
}

function parseInstallationResult(json: unknown, path: string): InstallationResult {
  const obj = expectObject(json, path);
  if (!Array.isArray(obj.ecus)) throw new MalformedMetadataError(`${path}.ecus`, 'not an array');
  return {
    directorTargetsVersion: expectInteger(obj.directorTargetsVersion, `${path}.directorTargetsVersion`, 0),
    success: expectBoolean(obj.success, `${path}.success`),
    code: expectString(obj.code, `${path}.code`),
    description: expectString(obj.description, `${path}.description`),
    ecus: obj.ecus.map((e, i) => {
      const p = `${path}.ecus[${i}]`;
      const o = expectObject(e, p);
      return {
        ecuSerial: expectString(o.ecuSerial, `${p}.ecuSerial`),
        success: expectBoolean(o.success, `${p}.success`),
        code: expectString(o.code, `${p}.code`),
        description: expectString(o.description, `${p}.description`),
        ...(o.filename !== undefined && { filename: expectString(o.filename, `${p}.filename`) }),
      };
    }),
  };
}

/** @throws MalformedMetadataError, also when a report is filed under another serial. */
export function parseVehicleManifest(json: unknown, path = 'manifest'): SignedVehicleManifest {
  const { signed, signatures } = parseEnvelope(json, path);
  const p = `${path}.signed`;
  const reportsObj = expectObject(signed.ecuVersionReports, `${p}.ecuVersionReports`);
  const ecuVersionReports: Record<string, SignedEcuReport> = nameMap(); // serials come from outside
  for (const [serial, r] of Object.entries(reportsObj)) {
    const report = parseEcuReport(r, `${p}.ecuVersionReports.${serial}`);
    if (report.signed.ecuSerial !== serial) {
      throw new MalformedMetadataError(`${p}.ecuVersionReports.${serial}`, `report is for ${report.signed.ecuSerial}`);
    }
    ecuVersionReports[serial] = report;
  }
  const manifest: VehicleManifest = {
    deviceId: expectString(signed.deviceId, `${p}.deviceId`),
    primaryEcuSerial: expectString(signed.primaryEcuSerial, `${p}.primaryEcuSerial`),
    ecuVersionReports,
    counter: expectInteger(signed.counter, `${p}.counter`, 0),
    timestamp: expectTime(signed.timestamp, `${p}.timestamp`),
  };
  if (signed.installationResult !== undefined && isObject(signed.installationResult)) {
    manifest.installationResult = parseInstallationResult(signed.installationResult, `${p}.installationResult`);
  } else if (signed.installationResult !== undefined) {
    throw new MalformedMetadataError(`${p}.installationResult`, 'not an object');
  }
  return { signed: manifest, signatures };
}

/**
 * The canonical bytes of the manifest's `signed` and of each ECU report's `signed`, from one
 * encoding pass: a report's canonical text is part of the manifest's, so it is encoded once
 * for both signatures. For verifyVehicleManifest and verifyEcuReport.
 * @throws CanonicalJsonError
 */
export function canonicalManifest(manifest: SignedVehicleManifest): CanonicalBytes {
  return CanonicalBytes.encodeTogether(manifest.signed, Object.values(manifest.signed.ecuVersionReports).map((r) => r.signed));
}

/**
 * Checks the primary's signature only; each ECU report is checked against its own key.
 * `known`: canonicalManifest(manifest), when the reports are verified too.
 * @throws BadDocumentSignatureError
 */
export function verifyVehicleManifest(manifest: SignedVehicleManifest, primaryKey: Key, known?: CanonicalBytes): void {
  verifyDocument(`manifest of ${manifest.signed.deviceId}`, manifest as SignedDocument<unknown>, primaryKey, known);
}
