/**
 * The manifest rules that need no store writes (Uptane 5.4.2.1), in one place:
 * the director runs them on the main thread (verify pool of size 0) or in a
 * verify worker (verify-thread.ts), never a copy of them. Checks, in order
 * (each refusal is a typed error and changes nothing): parse; the manifest's
 * deviceId is the authenticated device; the device is active; the primary
 * serial is the inventory's; the primary's signature; the counter exceeds the
 * last accepted one; exactly the inventory's ECUs; each report's hardware ID
 * and signature by that ECU's key. Signatures go through core
 * (verifyVehicleManifest, verifyEcuReport), over canonical bytes encoded once
 * for the manifest and its reports (canonicalManifest). What needs the stored nonce memory
 * (freshness) is checked later, inside the commit (manifests.ts).
 */
import { createHash } from 'node:crypto';
import {
  BadDocumentSignatureError,
  canonicalManifest,
  Key,
  MalformedMetadataError,
  parseVehicleManifest,
  verifyEcuReport,
  verifyVehicleManifest,
  type SignedVehicleManifest,
} from '@upfleet/core';
import { parseJsonBytes } from '@upfleet/core/uptane/signed-document.ts';
import { ForbiddenError, ManifestRejectedError, NotFoundError } from './errors.ts';
import type { DeviceRecord, EcuRecord, IngestionView } from './store.ts';

export type { IngestionView };

/** What the checks read of an IngestionView: all a verify worker is sent (structured clone costs per field). */
export interface CheckView {
  device: Pick<DeviceRecord, 'status' | 'manifestCounter'> | undefined;
  ecus: Array<Pick<EcuRecord, 'serial' | 'hardwareId' | 'primary' | 'publicKey'>>;
}

/** The part of `view` the checks read. */
export function checkViewOf(view: IngestionView): CheckView {
  const d = view.device;
  return {
    device: d && { status: d.status, manifestCounter: d.manifestCounter },
    ecus: view.ecus.map((e) => ({ serial: e.serial, hardwareId: e.hardwareId, primary: e.primary, publicKey: e.publicKey })),
  };
}

/** A manifest that passed every check: what it signs, and the sha256 of its bytes. */
export interface CheckedManifest {
  signed: SignedVehicleManifest['signed'];
  digest: string;
}

/** The device, if it may send manifests now. @throws NotFoundError, ForbiddenError (Inventory.requireActive's rule) */
export function requireActiveDevice<D extends Pick<DeviceRecord, 'status'>>(deviceId: string, device: D | undefined): D {
  if (!device) throw new NotFoundError('device', deviceId);
  if (device.status !== 'active') {
    throw new ForbiddenError(device.status === 'decommissioned' ? 'DEVICE_DECOMMISSIONED' : 'DEVICE_NOT_APPROVED', `${deviceId} is ${device.status}`, { deviceId, status: device.status });
  }
  return device;
}

/** Key objects by owner (an ECU serial, a device), rebuilt when the stored key changes (replacement). */
export class KeyCache {
  #keys = new Map<string, { json: string; key: Key }>();

  get(ecu: Pick<EcuRecord, 'serial' | 'publicKey'>): Key {
    return this.fromText(ecu.serial, JSON.stringify(ecu.publicKey));
  }

  /** The key whose stored JSON text is `json`: parsed only when `id`'s text changed. */
  fromText(id: string, json: string): Key {
    let entry = this.#keys.get(id);
    if (!entry || entry.json !== json) {
      entry = { json, key: Key.fromJSON(JSON.parse(json)) };
      if (this.#keys.size >= 100_000) this.#keys.clear();
      this.#keys.set(id, entry);
    }
    return entry.key;
  }
}

/** @throws ManifestRejectedError MALFORMED_MANIFEST */
export function parseManifest(deviceId: string, bytes: Uint8Array): SignedVehicleManifest {
  try {
    return parseVehicleManifest(parseJsonBytes(bytes, 'manifest'));
  } catch (cause) {
    if (cause instanceof MalformedMetadataError) {
      throw new ManifestRejectedError(deviceId, 'MALFORMED_MANIFEST', cause.message, { path: cause.path }, 400, { cause });
    }
    throw cause;
  }
}

const replay = (deviceId: string, counter: number, last: number) =>
  new ManifestRejectedError(deviceId, 'MANIFEST_REPLAY', `counter ${counter} is not above ${last}`, { counter, lastCounter: last }, 409);

/** The counter rule, also re-checked inside the commit against the row it writes. @throws ManifestRejectedError MANIFEST_REPLAY */
export function checkCounter(deviceId: string, counter: number, lastCounter: number): void {
  if (counter <= lastCounter) throw replay(deviceId, counter, lastCounter);
}

/**
 * Parses `bytes` and runs every check above against `view`.
 * @throws ManifestRejectedError, ForbiddenError, NotFoundError
 */
export function checkManifest(deviceId: string, bytes: Uint8Array, view: CheckView, keys: KeyCache): CheckedManifest {
  const m = parseManifest(deviceId, bytes);
  const s = m.signed;
  if (s.deviceId !== deviceId) {
    throw new ManifestRejectedError(deviceId, 'DEVICE_MISMATCH', `it names device ${s.deviceId}`, { manifestDeviceId: s.deviceId }, 403);
  }
  const device = requireActiveDevice(deviceId, view.device);
  const ecus = new Map(view.ecus.map((e) => [e.serial, e]));
  const primary = view.ecus.find((e) => e.primary);
  if (!primary || s.primaryEcuSerial !== primary.serial) {
    throw new ManifestRejectedError(deviceId, 'PRIMARY_MISMATCH', `primary ${s.primaryEcuSerial} is not the inventory primary`, { ecuSerial: s.primaryEcuSerial });
  }
  // Each report's canonical bytes are part of the manifest's: encoded once for both signatures.
  const canonical = canonicalManifest(m);
  try {
    verifyVehicleManifest(m, keys.get(primary), canonical);
  } catch (cause) {
    if (cause instanceof BadDocumentSignatureError) throw new ManifestRejectedError(deviceId, 'BAD_SIGNATURE', cause.message, {}, 422, { cause });
    throw cause;
  }
  checkCounter(deviceId, s.counter, device.manifestCounter);
  for (const serial of Object.keys(s.ecuVersionReports)) {
    if (!ecus.has(serial)) throw new ManifestRejectedError(deviceId, 'UNKNOWN_ECU', `ECU ${serial} is not in the inventory`, { ecuSerial: serial });
  }
  for (const [serial, ecu] of ecus) {
    const report = s.ecuVersionReports[serial];
    if (!report) throw new ManifestRejectedError(deviceId, 'MISSING_ECU', `no report from ECU ${serial}`, { ecuSerial: serial });
    if (report.signed.hardwareId !== ecu.hardwareId) {
      throw new ManifestRejectedError(deviceId, 'HARDWARE_MISMATCH', `ECU ${serial} reports hardware ${report.signed.hardwareId}, inventory has ${ecu.hardwareId}`,
        { ecuSerial: serial });
    }
    try {
      verifyEcuReport(report, keys.get(ecu), canonical);
    } catch (cause) {
      if (cause instanceof BadDocumentSignatureError) {
        throw new ManifestRejectedError(deviceId, 'BAD_ECU_SIGNATURE', cause.message, { ecuSerial: serial }, 422, { cause });
      }
      throw cause;
    }
  }
  return { signed: s, digest: digestOf(bytes) };
}

export const digestOf = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
