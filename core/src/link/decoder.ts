/**
 * Payload bytes -> frozen event, one reader per frame type. Every reader consumes
 * the whole payload (trailing bytes are an error) and validates ranges, so a
 * decoded event is always one the encoder could have produced.
 * @throws PayloadError (the session wraps it into RemoteProtocolError).
 */
import { ERROR_NAME_OF_CODE, event, MAX_CHUNK, type EcuInfo, type Event, type EventType, type Repo, type Verification } from './events.ts';
import { PayloadError, Reader } from './wire.ts';

const VERIFICATIONS: readonly Verification[] = ['partial', 'full'];
const REPOS: readonly Repo[] = ['director', 'image'];

function readInfo(r: Reader): EcuInfo {
  const ecuSerial = r.str8('ecuSerial');
  const hardwareId = r.str8('hardwareId');
  const publicKey = r.bytes8('publicKey');
  if (publicKey.length !== 32) throw new PayloadError(`publicKey is ${publicKey.length} bytes, not 32`);
  const verification = VERIFICATIONS[r.u8('verification')];
  if (!verification) throw new PayloadError('unknown verification mode');
  const flag = r.u8('installed flag');
  if (flag > 1) throw new PayloadError('installed flag is not 0 or 1');
  const installed = flag === 0 ? null : { filename: r.str8('filename'), length: r.u32('length'), hashes: r.hashes('hashes') };
  return { ecuSerial, hardwareId, publicKey, verification, installed, releaseCounter: r.u32('releaseCounter') };
}

type PayloadDecoder = (r: Reader) => Event;

/** One decoder per frame type; the sessions pick which types a state accepts. */
export const DECODERS: Readonly<Record<EventType, PayloadDecoder>> = {
  Hello: (r) => {
    const versions = [...r.bytes8('versions')];
    if (versions.length === 0) throw new PayloadError('no versions');
    return event({ type: 'Hello', versions, maxChunk: r.u16('maxChunk'), maxWindow: r.u16('maxWindow') });
  },
  HelloReply: (r) => {
    const version = r.u8('version');
    const chunkSize = r.u16('chunkSize');
    const windowSize = r.u16('windowSize');
    if (chunkSize === 0 || chunkSize > MAX_CHUNK || windowSize === 0) throw new PayloadError('chunk or window size out of range');
    return event({ type: 'HelloReply', version, chunkSize, windowSize, info: readInfo(r) });
  },
  InfoRequest: () => event({ type: 'InfoRequest' }),
  Info: (r) => event({ type: 'Info', info: readInfo(r) }),
  ReportRequest: (r) => event({ type: 'ReportRequest', nonce: r.str8('nonce') }),
  Report: (r) => event({ type: 'Report', report: r.bytes16('report') }),
  MetadataPart: (r) => {
    const repo = REPOS[r.u8('repo')];
    if (!repo) throw new PayloadError('unknown repository');
    const name = r.str8('name');
    const total = r.u32('total');
    const offset = r.u32('offset');
    const data = r.bytes16('data');
    if (data.length > MAX_CHUNK || offset + data.length > total) throw new PayloadError('metadata part out of range');
    return event({ type: 'MetadataPart', repo, name, total, offset, data });
  },
  MetadataEnd: () => event({ type: 'MetadataEnd' }),
  ImageBegin: (r) => event({ type: 'ImageBegin', name: r.str8('name'), length: r.u32('length'), hashes: r.hashes('hashes') }),
  ImageReady: (r) => event({ type: 'ImageReady', offset: r.u32('offset') }),
  ImageData: (r) => {
    const offset = r.u32('offset');
    const data = r.rest();
    if (data.length === 0 || data.length > MAX_CHUNK) throw new PayloadError(`chunk of ${data.length} bytes`);
    return event({ type: 'ImageData', offset, data });
  },
  ImageAck: (r) => event({ type: 'ImageAck', next: r.u32('next') }),
  ImageNak: (r) => event({ type: 'ImageNak', next: r.u32('next'), missing: r.u32('missing') }),
  ImageEnd: () => event({ type: 'ImageEnd' }),
  Activate: () => event({ type: 'Activate' }),
  Abort: () => event({ type: 'Abort' }),
  Ok: () => event({ type: 'Ok' }),
  Refusal: (r) => {
    const code = ERROR_NAME_OF_CODE.get(r.u16('code'));
    if (!code) throw new PayloadError('unknown error code');
    return event({ type: 'Refusal', code, retryAfterMs: r.u32('retryAfterMs'), detail: r.str16('detail') });
  },
};

/** @throws PayloadError */
export function decodePayload(type: EventType, payload: Uint8Array): Event {
  const r = new Reader(payload);
  const e = DECODERS[type](r);
  r.end(type);
  return e;
}
