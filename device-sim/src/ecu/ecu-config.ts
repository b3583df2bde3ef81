/**
 * The simulated ECU's configuration file (ecu.json), for `upfleet-sim ecu`.
 * Paths are relative to the file's directory. The key is a core key file
 * (encrypted ed25519 seed); when the file named does not exist, a fresh key is
 * generated into it. Bad fields raise EcuConfigError naming the field.
 *
 * {
 *   "ecuSerial": "brake-1", "hardwareId": "brake", "verification": "partial",
 *   "key": "brake-1.key", "directorRoot": "director-root.json", "imageRoot": "image-root.json",
 *   "stateDir": "brake-1-state", "flashBytesPerSecond": 0, "eraseMs": 0, "rebootMs": 1000,
 *   "refuse": null
 * }
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { decryptKeyFile, Ed25519Signer, encryptKeyFile, UpfleetError } from '@upfleet/core';
import { ERROR_CODES, type ErrorCodeName } from '@upfleet/core/link/index.ts';
import type { SimulatedEcuOptions } from './simulated-ecu.ts';

export class EcuConfigError extends UpfleetError {
  override name = 'EcuConfigError';
  override readonly code = 'ECU_CONFIG';
  constructor(readonly file: string, readonly field: string, reason: string) {
    super(`${file}: ${field} ${reason}`);
  }
}

/**
 * Reads ecu.json into SimulatedEcu options.
 * @throws EcuConfigError; KeyFileError for a wrong passphrase
 */
export function loadEcuConfig(file: string, passphrase: string): SimulatedEcuOptions {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (cause) {
    throw new EcuConfigError(file, 'file', `cannot be read as JSON (${(cause as Error).message})`);
  }
  const base = dirname(resolve(file));
  const str = (k: string, required = true): string | undefined => {
    const v = raw[k];
    if (v === undefined && !required) return undefined;
    if (typeof v !== 'string' || v === '') throw new EcuConfigError(file, k, 'must be a non-empty string');
    return v;
  };
  const num = (k: string, dflt: number): number => {
    const v = raw[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new EcuConfigError(file, k, 'must be a number >= 0');
    return v;
  };
  const verification = raw.verification ?? 'partial';
  if (verification !== 'partial' && verification !== 'full') throw new EcuConfigError(file, 'verification', 'must be "partial" or "full"');
  const refuse = raw.refuse ?? null;
  if (refuse !== null && !(typeof refuse === 'string' && refuse in ERROR_CODES)) throw new EcuConfigError(file, 'refuse', 'must be null or an error code name');
  const readRoot = (k: string, required: boolean): Uint8Array | undefined => {
    const p = str(k, required);
    if (p === undefined) return undefined;
    try {
      return new Uint8Array(readFileSync(resolve(base, p)));
    } catch {
      throw new EcuConfigError(file, k, `names ${p}, which cannot be read`);
    }
  };
  const ecuSerial = str('ecuSerial')!;
  const keyPath = resolve(base, str('key', false) ?? `${ecuSerial}.key`);
  let signer: Ed25519Signer;
  if (existsSync(keyPath)) {
    signer = decryptKeyFile(new Uint8Array(readFileSync(keyPath)), passphrase, keyPath);
  } else {
    signer = Ed25519Signer.generate();
    writeFileSync(keyPath, encryptKeyFile(signer, passphrase), { mode: 0o600 });
  }
  const dir = resolve(base, str('stateDir', false) ?? `${ecuSerial}-state`);
  mkdirSync(dir, { recursive: true });
  const imageRoot = readRoot('imageRoot', verification === 'full');
  return {
    dir, ecuSerial, hardwareId: str('hardwareId')!, signer, verification,
    directorRoot: readRoot('directorRoot', true)!, ...(imageRoot && { imageRoot }),
    flashBytesPerSecond: num('flashBytesPerSecond', 0), eraseMs: num('eraseMs', 0), rebootMs: num('rebootMs', 1000),
    refuse: refuse as ErrorCodeName | null,
  };
}
