/**
 * Identifier rules. Device IDs and ECU serials become MQTT topic segments and
 * URL path segments, so they exclude `/`, `+`, `#`, `:` and whitespace.
 */
import { ID_PATTERN } from '@upfleet/core';
import { BadRequestError } from './errors.ts';

export { ID_PATTERN };

/** @throws BadRequestError */
export function checkId(kind: 'deviceId' | 'ecuSerial' | 'hardwareId', value: unknown): string {
  if (typeof value !== 'string' || !ID_PATTERN.test(value)) {
    throw new BadRequestError(`${kind} must match ${ID_PATTERN.source}`, { field: kind });
  }
  return value;
}
