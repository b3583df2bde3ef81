/**
 * Frame layout (before COBS):  version u8 | type u8 | seq u16 | payload | CRC-32 u32
 * (big-endian; the CRC covers everything before it). On the wire each frame is
 * COBS-encoded and followed by one 0x00 delimiter.
 *
 * Invariants of FrameBuffer:
 * - It holds at most one incomplete frame's bytes beyond `maxIncomplete`; past
 *   that `next()` reports overflow (the caller raises a remote error).
 * - Line damage (bad COBS, short frame, bad CRC, oversize) is reported as
 *   `corrupt`, never thrown: on a serial line it is noise, not a protocol error.
 * - Empty frames (consecutive delimiters) are skipped, so a sender may emit a
 *   leading 0x00 to flush a receiver's partial garbage.
 */
import { cobsDecode, cobsEncode, cobsMaxEncodedLength } from './cobs.ts';
import { crc32 } from './crc32.ts';
import { MAX_CHUNK } from './events.ts';

export const HEADER_LENGTH = 4;
export const CRC_LENGTH = 4;
/** Room for the largest payload: a MetadataPart of MAX_CHUNK data with a 255-byte name. */
export const MAX_PAYLOAD = MAX_CHUNK + 512;
export const MAX_FRAME = HEADER_LENGTH + MAX_PAYLOAD + CRC_LENGTH;
/** The longest run of bytes without a delimiter a receiver buffers: two merged frames and slack. */
export const MAX_INCOMPLETE = 4 * (cobsMaxEncodedLength(MAX_FRAME) + 1);

export interface RawFrame {
  readonly version: number;
  readonly typeCode: number;
  readonly seq: number;
  readonly payload: Uint8Array;
}

/** The wire bytes of one frame, delimiter included. */
export function encodeFrame(f: RawFrame): Uint8Array {
  const body = new Uint8Array(HEADER_LENGTH + f.payload.length + CRC_LENGTH);
  const view = new DataView(body.buffer);
  body[0] = f.version;
  body[1] = f.typeCode;
  view.setUint16(2, f.seq);
  body.set(f.payload, HEADER_LENGTH);
  view.setUint32(body.length - CRC_LENGTH, crc32(body.subarray(0, body.length - CRC_LENGTH)));
  const encoded = cobsEncode(body);
  const out = new Uint8Array(encoded.length + 1);
  out.set(encoded);
  return out;
}

/** Parses one delimited frame (without its delimiter); undefined when damaged. */
export function parseFrame(encoded: Uint8Array): RawFrame | undefined {
  if (encoded.length > cobsMaxEncodedLength(MAX_FRAME)) return undefined;
  const body = cobsDecode(encoded);
  if (!body || body.length < HEADER_LENGTH + CRC_LENGTH) return undefined;
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const end = body.length - CRC_LENGTH;
  if (view.getUint32(end) !== crc32(body.subarray(0, end))) return undefined;
  return { version: body[0]!, typeCode: body[1]!, seq: view.getUint16(2), payload: body.slice(HEADER_LENGTH, end) };
}

export type FrameResult =
  | { readonly kind: 'frame'; readonly frame: RawFrame }
  | { readonly kind: 'corrupt' }
  | { readonly kind: 'overflow'; readonly buffered: number }
  | { readonly kind: 'need-data' };

export class FrameBuffer {
  #buf = new Uint8Array(1024);
  #start = 0;
  #end = 0;
  /** Where the search for the next delimiter resumes (nothing before it is 0x00). */
  #scan = 0;

  constructor(readonly maxIncomplete = MAX_INCOMPLETE) {}

  get buffered(): number {
    return this.#end - this.#start;
  }

  append(bytes: Uint8Array): void {
    if (this.#end + bytes.length > this.#buf.length) {
      const live = this.#end - this.#start;
      const size = Math.max(this.#buf.length, (live + bytes.length) * 2);
      const next = size === this.#buf.length ? this.#buf : new Uint8Array(size);
      next.set(this.#buf.subarray(this.#start, this.#end), 0);
      this.#buf = next;
      this.#scan -= this.#start;
      this.#end = live;
      this.#start = 0;
    }
    this.#buf.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  next(): FrameResult {
    for (;;) {
      const at = this.#buf.subarray(0, this.#end).indexOf(0, this.#scan);
      if (at < 0) {
        this.#scan = this.#end;
        const incomplete = this.#end - this.#start;
        return incomplete > this.maxIncomplete ? { kind: 'overflow', buffered: incomplete } : { kind: 'need-data' };
      }
      const encoded = this.#buf.subarray(this.#start, at);
      this.#start = this.#scan = at + 1;
      if (encoded.length === 0) continue;
      const frame = parseFrame(encoded);
      return frame ? { kind: 'frame', frame } : { kind: 'corrupt' };
    }
  }

  clear(): void {
    this.#start = this.#end = this.#scan = 0;
  }
}
