/**
 * The two sessions' states and the tables that say, per state, what each
 * incoming frame type means. A type missing from a state's row is a remote
 * protocol error. Reading a row tells the whole story of that state:
 *
 * - 'event'  decode it and hand it to the caller;
 * - 'ignore' a late duplicate that a lossy link legitimately produces
 *            (a stale reply, an ack after the transfer ended); drop and count it;
 * - 'data'   (ECU, TRANSFER) feed the selective-repeat receiver;
 * - 'hello-required' (ECU, IDLE) answer on the session's own with a
 *            HELLO_REQUIRED refusal, so a primary learns the ECU restarted.
 */
import type { EventType } from './events.ts';

export type PrimaryState = 'IDLE' | 'AWAIT_REPLY' | 'READY' | 'TRANSFER' | 'ERROR';
export type EcuState = 'IDLE' | 'READY' | 'RESPONDING' | 'TRANSFER' | 'ERROR';
export type Action = 'event' | 'ignore' | 'data' | 'hello-required';
type Row = Readonly<Partial<Record<EventType, Action>>>;

const STALE_REPLIES: Row = {
  HelloReply: 'ignore', Info: 'ignore', Report: 'ignore', Ok: 'ignore', ImageReady: 'ignore',
  ImageAck: 'ignore', ImageNak: 'ignore',
};

/** Frames the primary accepts from the ECU. `Refusal` is always decoded: one with seq 0 is unsolicited. */
export const PRIMARY_TABLE: Readonly<Record<Exclude<PrimaryState, 'ERROR'>, Row>> = {
  //            replies to the pending request are events; the rest are stale
  IDLE:        { ...STALE_REPLIES, Refusal: 'event' },
  AWAIT_REPLY: { HelloReply: 'event', Info: 'event', Report: 'event', Ok: 'event', ImageReady: 'event', Refusal: 'event', ImageAck: 'ignore', ImageNak: 'ignore' },
  READY:       { ...STALE_REPLIES, Refusal: 'event' },
  TRANSFER:    { ...STALE_REPLIES, ImageAck: 'event', ImageNak: 'event', Refusal: 'event' },
};

const ALL_REQUESTS: Row = {
  Hello: 'event', InfoRequest: 'event', ReportRequest: 'event', MetadataPart: 'event', MetadataEnd: 'event',
  ImageBegin: 'event', ImageEnd: 'event', Activate: 'event', Abort: 'event',
};

/** Frames the ECU accepts from the primary. RESPONDING decodes nothing: it is PAUSED. */
export const ECU_TABLE: Readonly<Record<Exclude<EcuState, 'ERROR' | 'RESPONDING'>, Row>> = {
  IDLE: {
    Hello: 'event', InfoRequest: 'hello-required', ReportRequest: 'hello-required', MetadataPart: 'hello-required',
    MetadataEnd: 'hello-required', ImageBegin: 'hello-required', ImageEnd: 'hello-required', Activate: 'hello-required',
    Abort: 'hello-required', ImageData: 'ignore',
  },
  READY:    { ...ALL_REQUESTS, ImageData: 'ignore' },
  TRANSFER: { ...ALL_REQUESTS, ImageData: 'data' },
};
