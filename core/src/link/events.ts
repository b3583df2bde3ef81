/**
 * The events of the serial link protocol, version 1: one frozen, plain object per
 * message, discriminated by `type`. Requests go from the primary to the ECU;
 * replies and the data acknowledgements go back. Wire codes and error codes are
 * part of the protocol (docs/serial-protocol.md) and never change meaning.
 */

export const PROTOCOL_VERSION = 1;
/** The largest image chunk (and metadata part) any version-1 peer accepts. */
export const MAX_CHUNK = 4096;

/** Frame type byte of each message. */
export const FRAME_TYPES = {
  Hello: 0x01,
  HelloReply: 0x02,
  InfoRequest: 0x03,
  Info: 0x04,
  ReportRequest: 0x05,
  Report: 0x06,
  MetadataPart: 0x07,
  MetadataEnd: 0x08,
  ImageBegin: 0x09,
  ImageReady: 0x0a,
  ImageData: 0x0b,
  ImageAck: 0x0c,
  ImageNak: 0x0d,
  ImageEnd: 0x0e,
  Activate: 0x0f,
  Abort: 0x10,
  Ok: 0x11,
  Refusal: 0x12,
} as const;
export type EventType = keyof typeof FRAME_TYPES;
export const TYPE_OF_CODE: ReadonlyMap<number, EventType> = new Map(
  Object.entries(FRAME_TYPES).map(([name, code]) => [code, name as EventType]),
);

/** Error codes an ECU refusal carries (16-bit on the wire). */
export const ERROR_CODES = {
  PROTOCOL: 1,
  UNSUPPORTED_VERSION: 2,
  HELLO_REQUIRED: 3,
  BUSY: 4,
  METADATA_MALFORMED: 10,
  METADATA_UNSIGNED: 11,
  METADATA_EXPIRED: 12,
  METADATA_ROLLBACK: 13,
  METADATA_INCOMPLETE: 14,
  NO_TARGET_FOR_ECU: 15,
  HARDWARE_ID_MISMATCH: 16,
  TARGET_MISMATCH: 17,
  NO_METADATA: 18,
  IMAGE_ROLLBACK: 19,
  IMAGE_MISMATCH: 20,
  LENGTH_MISMATCH: 21,
  HASH_MISMATCH: 22,
  NO_TRANSFER: 23,
  NO_IMAGE: 24,
  FLASH_ERROR: 25,
  LOW_BATTERY: 30,
  REFUSED: 31,
  ABORTED: 32,
} as const;
export type ErrorCodeName = keyof typeof ERROR_CODES;
export const ERROR_NAME_OF_CODE: ReadonlyMap<number, ErrorCodeName> = new Map(
  Object.entries(ERROR_CODES).map(([name, code]) => [code, name as ErrorCodeName]),
);

export type Verification = 'partial' | 'full';
export type Hashes = Readonly<Record<string, string>>;

export interface WireInstalledImage {
  readonly filename: string;
  readonly length: number;
  readonly hashes: Hashes;
}

/** What an ECU says about itself in HelloReply and Info. */
export interface EcuInfo {
  readonly ecuSerial: string;
  readonly hardwareId: string;
  /** Raw ed25519 public key, 32 bytes. */
  readonly publicKey: Uint8Array;
  readonly verification: Verification;
  readonly installed: WireInstalledImage | null;
  readonly releaseCounter: number;
}

export type Repo = 'director' | 'image';

export interface Hello { readonly type: 'Hello'; readonly versions: readonly number[]; readonly maxChunk: number; readonly maxWindow: number }
export interface HelloReply { readonly type: 'HelloReply'; readonly version: number; readonly chunkSize: number; readonly windowSize: number; readonly info: EcuInfo }
export interface InfoRequest { readonly type: 'InfoRequest' }
export interface Info { readonly type: 'Info'; readonly info: EcuInfo }
export interface ReportRequest { readonly type: 'ReportRequest'; readonly nonce: string }
/** `report` is the canonical JSON of a SignedEcuReport. */
export interface Report { readonly type: 'Report'; readonly report: Uint8Array }
export interface MetadataPart { readonly type: 'MetadataPart'; readonly repo: Repo; readonly name: string; readonly total: number; readonly offset: number; readonly data: Uint8Array }
export interface MetadataEnd { readonly type: 'MetadataEnd' }
export interface ImageBegin { readonly type: 'ImageBegin'; readonly name: string; readonly length: number; readonly hashes: Hashes }
export interface ImageReady { readonly type: 'ImageReady'; readonly offset: number }
export interface ImageData { readonly type: 'ImageData'; readonly offset: number; readonly data: Uint8Array }
/** Cumulative: every byte before `next` is stored. */
export interface ImageAck { readonly type: 'ImageAck'; readonly next: number }
/** Cumulative `next`, plus one chunk the ECU found missing. */
export interface ImageNak { readonly type: 'ImageNak'; readonly next: number; readonly missing: number }
export interface ImageEnd { readonly type: 'ImageEnd' }
export interface Activate { readonly type: 'Activate' }
export interface Abort { readonly type: 'Abort' }
export interface Ok { readonly type: 'Ok' }
export interface Refusal { readonly type: 'Refusal'; readonly code: ErrorCodeName; readonly retryAfterMs: number; readonly detail: string }

export type Request = Hello | InfoRequest | ReportRequest | MetadataPart | MetadataEnd | ImageBegin | ImageEnd | Activate | Abort;
export type Reply = HelloReply | Info | Report | Ok | Refusal | ImageReady;
export type Event = Request | Reply | ImageData | ImageAck | ImageNak;

export const REQUEST_TYPES: ReadonlySet<EventType> = new Set<EventType>([
  'Hello', 'InfoRequest', 'ReportRequest', 'MetadataPart', 'MetadataEnd', 'ImageBegin', 'ImageEnd', 'Activate', 'Abort',
]);

/** Which replies answer each request (anything else with the request's sequence is a protocol error). */
export const REPLIES_TO: Readonly<Record<Request['type'], readonly EventType[]>> = {
  Hello: ['HelloReply', 'Refusal'],
  InfoRequest: ['Info', 'Refusal'],
  ReportRequest: ['Report', 'Refusal'],
  MetadataPart: ['Ok', 'Refusal'],
  MetadataEnd: ['Ok', 'Refusal'],
  ImageBegin: ['ImageReady', 'Refusal'],
  ImageEnd: ['Ok', 'Refusal'],
  Activate: ['Ok', 'Refusal'],
  Abort: ['Ok', 'Refusal'],
};

/** Freezes an event (and its nested info) so no layer can change it after it is built. */
export function event<E extends Event>(e: E): E {
  if ('info' in e) Object.freeze(e.info);
  return Object.freeze(e);
}

/** A refusal event; `retryAfterMs` matters for BUSY. */
export function refusal(code: ErrorCodeName, detail = '', retryAfterMs = 0): Refusal {
  return event({ type: 'Refusal', code, detail, retryAfterMs });
}

/** Sentinels of nextEvent(), as in h11. */
export const NEED_DATA = Symbol('NEED_DATA');
export const PAUSED = Symbol('PAUSED');
export type NextEvent = Event | typeof NEED_DATA | typeof PAUSED;
