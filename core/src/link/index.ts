/** The serial link protocol, sans-I/O: codec, frames, and the primary and ECU sessions. */
export * from './events.ts';
export * from './errors.ts';
export * from './crc32.ts';
export * from './cobs.ts';
export * from './frame.ts';
export { encodePayload } from './encoder.ts';
export { decodePayload } from './decoder.ts';
export { PayloadError } from './wire.ts';
export * from './state.ts';
export type { LinkStats, SessionOptions } from './connection.ts';
export * from './primary-session.ts';
export * from './ecu-session.ts';
export { refusalCodeFor } from './refusal-codes.ts';
