/**
 * Device tokens, the contract between the agent (which signs them) and the
 * director (which checks them): `<deviceId>:<expires>:<signatureHex>`, an ed25519 signature by
 * the device's primary ECU key over `upfleet-device-token/v1:<deviceId>:<expires>`
 * (expires in Unix seconds). The same string authenticates HTTP requests
 * (`Authorization: UpfleetDevice <token>`) and MQTT connections (password).
 * Tokens are short-lived: a verifier refuses one that expired or that expires
 * further ahead than the maximum lifetime, both with a small clock-skew allowance.
 */
import { fromHex, toHex, utf8 } from '../bytes.ts';
import type { Key, Signer } from '../keys.ts';

/** Device IDs (and ECU serials) become MQTT topic and URL path segments: no `/ + # :` or spaces. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export const TOKEN_MAX_LIFETIME_S = 3600;
export const TOKEN_SKEW_S = 30;

function tokenMessage(deviceId: string, expires: number): Uint8Array {
  return utf8(`upfleet-device-token/v1:${deviceId}:${expires}`);
}

/** Signs a token for `deviceId` valid until `expires` (Unix seconds). */
export function signDeviceToken(deviceId: string, primary: Signer, expires: number): string {
  return `${deviceId}:${expires}:${toHex(primary.sign(tokenMessage(deviceId, expires)))}`;
}

export interface ParsedToken {
  deviceId: string;
  expires: number;
  signature: Uint8Array;
}

/** Splits a token; undefined when it is not one. */
export function parseDeviceToken(token: string): ParsedToken | undefined {
  const parts = token.split(':');
  if (parts.length !== 3) return undefined;
  const [deviceId, expiresText, sigHex] = parts as [string, string, string];
  if (!ID_PATTERN.test(deviceId) || !/^\d{1,12}$/.test(expiresText)) return undefined;
  const signature = fromHex(sigHex);
  if (!signature || signature.byteLength !== 64) return undefined;
  return { deviceId, expires: Number(expiresText), signature };
}

/** Why a token is refused, or undefined when it is valid at `nowSeconds` for `key`. */
export function checkDeviceToken(parsed: ParsedToken, key: Key, nowSeconds: number): string | undefined {
  if (parsed.expires < nowSeconds - TOKEN_SKEW_S) return 'token expired';
  if (parsed.expires > nowSeconds + TOKEN_MAX_LIFETIME_S + TOKEN_SKEW_S) return 'token lifetime too long';
  if (!key.verify(parsed.signature, tokenMessage(parsed.deviceId, parsed.expires))) return 'bad token signature';
  return undefined;
}
