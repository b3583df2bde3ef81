/**
 * Event -> payload bytes, one writer per event type (layouts in
 * docs/serial-protocol.md). Encoding never fails for a well-typed event whose
 * fields are in range; out-of-range fields throw RangeError (a caller bug,
 * turned into LocalProtocolError by the sessions).
 */
import { ERROR_CODES, type EcuInfo, type Event } from './events.ts';
import { Writer } from './wire.ts';

const VERIFICATION_CODES = { partial: 0, full: 1 } as const;
const REPO_CODES = { director: 0, image: 1 } as const;

function writeInfo(w: Writer, info: EcuInfo): Writer {
  w.str8(info.ecuSerial).str8(info.hardwareId).bytes8(info.publicKey).u8(VERIFICATION_CODES[info.verification]);
  if (info.installed === null) w.u8(0);
  else w.u8(1).str8(info.installed.filename).u32(info.installed.length).hashes(info.installed.hashes);
  return w.u32(info.releaseCounter);
}

function checkU32(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`${what} ${n} is not a u32`);
}

/** @throws RangeError for a field out of range. */
export function encodePayload(e: Event): Uint8Array {
  const w = new Writer();
  switch (e.type) {
    case 'Hello':
      w.bytes8(Uint8Array.from(e.versions)).u16(e.maxChunk).u16(e.maxWindow);
      break;
    case 'HelloReply':
      writeInfo(w.u8(e.version).u16(e.chunkSize).u16(e.windowSize), e.info);
      break;
    case 'Info':
      writeInfo(w, e.info);
      break;
    case 'ReportRequest':
      w.str8(e.nonce);
      break;
    case 'Report':
      w.bytes16(e.report);
      break;
    case 'MetadataPart':
      checkU32(e.total, 'total');
      checkU32(e.offset, 'offset');
      w.u8(REPO_CODES[e.repo]).str8(e.name).u32(e.total).u32(e.offset).bytes16(e.data);
      break;
    case 'ImageBegin':
      checkU32(e.length, 'length');
      w.str8(e.name).u32(e.length).hashes(e.hashes);
      break;
    case 'ImageReady':
      checkU32(e.offset, 'offset');
      w.u32(e.offset);
      break;
    case 'ImageData':
      checkU32(e.offset, 'offset');
      w.u32(e.offset).bytes(e.data);
      break;
    case 'ImageAck':
      checkU32(e.next, 'next');
      w.u32(e.next);
      break;
    case 'ImageNak':
      checkU32(e.next, 'next');
      checkU32(e.missing, 'missing');
      w.u32(e.next).u32(e.missing);
      break;
    case 'Refusal':
      checkU32(e.retryAfterMs, 'retryAfterMs');
      w.u16(ERROR_CODES[e.code]).u32(e.retryAfterMs).str16(e.detail);
      break;
    case 'InfoRequest':
    case 'MetadataEnd':
    case 'ImageEnd':
    case 'Activate':
    case 'Abort':
    case 'Ok':
      break;
  }
  return w.finish();
}

export { VERIFICATION_CODES, REPO_CODES };
