/**
 * The ECU's side of the link: it answers one request at a time and receives
 * image data with a selective-repeat receiver.
 *
 * Invariants:
 * - After a request event is returned, nextEvent() returns PAUSED until the
 *   caller sends its reply (h11's PAUSED): the caller is never handed a second
 *   request while it owes an answer.
 * - A repeated request (same sequence and type, the primary's reply got lost) is
 *   answered from the cached reply and never reaches the caller twice, so
 *   Activate or ImageBegin cannot run twice. Hello is always delivered.
 * - Image data reaches the caller in order and exactly once, each chunk
 *   inside the window [next, next + window * chunk). Out-of-order chunks wait
 *   in a buffer of at most `window` chunks. A gap is NAKed when seen, and again
 *   only after `window` more frames (damaged ones included) passed without it;
 *   a damaged frame NAKs the oldest missing chunk and the one after the newest
 *   (clock-free recovery).
 * - The caller acks (ImageAck) only what it has stored, so the ack is the resume
 *   offset; acks never move backwards.
 */
import { LinkSession, type SessionOptions } from './connection.ts';
import { LocalProtocolError } from './errors.ts';
import {
  MAX_CHUNK, NEED_DATA, PAUSED, PROTOCOL_VERSION, REPLIES_TO, event, refusal,
  type Event, type Hello, type ImageData, type NextEvent, type Refusal, type Request,
} from './events.ts';
import { ECU_TABLE, type EcuState } from './state.ts';

export interface EcuLimits {
  maxChunk: number;
  maxWindow: number;
}

export const ECU_DEFAULTS: EcuLimits = { maxChunk: 1024, maxWindow: 16 };

/**
 * The version, chunk size and window for a Hello, or an UNSUPPORTED_VERSION refusal.
 */
export function negotiate(hello: Hello, limits: EcuLimits = ECU_DEFAULTS): { version: number; chunkSize: number; windowSize: number } | Refusal {
  if (!hello.versions.includes(PROTOCOL_VERSION)) return refusal('UNSUPPORTED_VERSION', `ECU speaks version ${PROTOCOL_VERSION}`);
  return {
    version: PROTOCOL_VERSION,
    chunkSize: Math.max(1, Math.min(hello.maxChunk, limits.maxChunk, MAX_CHUNK)),
    windowSize: Math.max(1, Math.min(hello.maxWindow, limits.maxWindow)),
  };
}

interface Receiver {
  readonly length: number;
  /** Next in-order offset to deliver. */
  next: number;
  /** Last cumulative ack sent by the caller. */
  acked: number;
  /** End of the highest chunk seen: where a damaged frame most likely belonged. */
  highestEnd: number;
  readonly held: Map<number, Uint8Array>;
  /** Missing offset -> `frames` when it was last NAKed. */
  readonly nakked: Map<number, number>;
  /** Data and damaged frames seen in this transfer: the clock of NAK repeats. */
  frames: number;
}

export class EcuSession extends LinkSession<EcuState> {
  #state: Exclude<EcuState, 'ERROR'> = 'IDLE';
  #pending: { request: Request; seq: number; from: Exclude<EcuState, 'ERROR' | 'RESPONDING'> } | undefined;
  #cached: { seq: number; type: string; bytes: Uint8Array } | undefined;
  #link = { chunkSize: 0, windowSize: 0 };
  #beginLength = 0;
  #rx: Receiver | undefined;
  #ready: ImageData[] = [];

  constructor(options: SessionOptions = {}) {
    super(options);
  }

  get state(): EcuState {
    return this.error ? 'ERROR' : this.#state;
  }

  /** The request awaiting a reply, if any. */
  get pendingRequest(): Request | undefined {
    return this.#pending?.request;
  }

  override reset(): void {
    super.reset();
    this.#state = 'IDLE';
    this.#pending = undefined;
    this.#cached = undefined;
    this.#rx = undefined;
    this.#ready = [];
  }

  /**
   * The next request or in-order image chunk.
   * @throws RemoteProtocolError (then ERROR until reset)
   */
  nextEvent(): NextEvent {
    this.throwIfError();
    for (;;) {
      const ready = this.#ready.shift();
      if (ready) return ready;
      if (this.#state === 'RESPONDING') return PAUSED;
      const f = this.nextFrame();
      if (!f) return NEED_DATA;
      const action = ECU_TABLE[this.#state][f.type];
      if (action === undefined) throw this.remote(`unexpected ${f.type}`);
      const e = this.decode(f);
      if (action === 'ignore') {
        this.stats.ignored++;
      } else if (action === 'hello-required') {
        this.queue(this.frame(refusal('HELLO_REQUIRED', 'send Hello first'), f.seq));
      } else if (action === 'data') {
        this.#receiveData(e as ImageData);
      } else if (this.#isDuplicate(f.seq, e)) {
        this.stats.ignored++;
        this.queue(this.#cached!.bytes);
        this.stats.retransmits++;
      } else {
        this.#pending = { request: e as Request, seq: f.seq, from: this.#state };
        if (e.type === 'ImageBegin') this.#beginLength = e.length;
        this.#state = 'RESPONDING';
        return e;
      }
    }
  }

  #isDuplicate(seq: number, e: Event): boolean {
    return e.type !== 'Hello' && this.#cached !== undefined && this.#cached.seq === seq && this.#cached.type === e.type;
  }

  /**
   * Frames a reply to the pending request, an ImageAck for stored data, or an
   * unsolicited Refusal (sequence 0) that ends a transfer or reports our error.
   * @throws LocalProtocolError when the event does not fit the state.
   */
  send(e: Event): Uint8Array {
    if (e.type === 'ImageAck') return this.#sendAck(e.next);
    if (e.type === 'Refusal' && !this.#pending) return this.#sendUnsolicited(e);
    const p = this.#pending;
    if (this.error || !p) throw new LocalProtocolError(this.state, `send ${e.type} with no request pending`);
    if (!REPLIES_TO[p.request.type].includes(e.type)) throw new LocalProtocolError('RESPONDING', `answer ${p.request.type} with ${e.type}`);
    const bytes = this.frame(this.#checkReply(p.request, e), p.seq);
    this.#pending = undefined;
    this.#cached = { seq: p.seq, type: p.request.type, bytes };
    this.#state = this.#afterReply(p.request, p.from, e);
    return bytes;
  }

  #checkReply(request: Request, reply: Event): Event {
    if (reply.type === 'HelloReply' && request.type === 'Hello') {
      if (!request.versions.includes(reply.version) || reply.chunkSize > request.maxChunk || reply.windowSize > request.maxWindow) {
        throw new LocalProtocolError('RESPONDING', 'reply to Hello outside what the primary offered');
      }
    }
    if (reply.type === 'ImageReady' && reply.offset > this.#beginLength) {
      throw new LocalProtocolError('RESPONDING', `resume at ${reply.offset} past length ${this.#beginLength}`);
    }
    return reply;
  }

  #afterReply(request: Request, from: Exclude<EcuState, 'ERROR' | 'RESPONDING'>, reply: Event): Exclude<EcuState, 'ERROR'> {
    if (reply.type === 'HelloReply') {
      this.#link = { chunkSize: reply.chunkSize, windowSize: reply.windowSize };
      this.#rx = undefined;
      return 'READY';
    }
    if (reply.type === 'ImageReady') {
      const o = reply.offset;
      this.#rx = { length: this.#beginLength, next: o, acked: o, highestEnd: o, held: new Map(), nakked: new Map(), frames: 0 };
      return 'TRANSFER';
    }
    if (request.type === 'Hello') return 'IDLE';
    if ((request.type === 'InfoRequest' || request.type === 'ReportRequest') && from === 'TRANSFER') return 'TRANSFER';
    if (from === 'TRANSFER' && reply.type === 'Refusal' && request.type !== 'ImageEnd' && request.type !== 'Abort') return 'TRANSFER';
    this.#rx = undefined;
    return 'READY';
  }

  #sendUnsolicited(e: Refusal): Uint8Array {
    const bytes = this.frame(e, 0);
    if (!this.error && this.#state === 'TRANSFER') {
      this.#rx = undefined;
      this.#ready = [];
      this.#state = 'READY';
    }
    return bytes;
  }

  #sendAck(next: number): Uint8Array {
    const rx = this.#rx;
    if (this.error || !rx) throw new LocalProtocolError(this.state, 'ack with no transfer');
    const delivered = rx.next - this.#ready.reduce((n, c) => n + c.data.length, 0);
    if (next < rx.acked || next > delivered) throw new LocalProtocolError(this.state, `ack ${next} outside [${rx.acked}, ${delivered}]`);
    rx.acked = next;
    return this.frame(event({ type: 'ImageAck', next }), 0);
  }

  #receiveData(d: ImageData): void {
    const rx = this.#rx!;
    const end = d.offset + d.data.length;
    if (end > rx.length) throw this.remote(`chunk ${d.offset}+${d.data.length} past length ${rx.length}`);
    const { chunkSize, windowSize } = this.#link;
    if (d.data.length > chunkSize) throw this.remote(`chunk of ${d.data.length} bytes, negotiated ${chunkSize}`);
    rx.highestEnd = Math.max(rx.highestEnd, end);
    rx.frames++;
    if (d.offset < rx.next || rx.held.has(d.offset)) {
      this.stats.ignored++;
      this.queue(this.frame(event({ type: 'ImageAck', next: rx.acked }), 0));
      return;
    }
    if (d.offset >= rx.next + windowSize * chunkSize) {
      this.stats.ignored++;
      return;
    }
    rx.nakked.delete(d.offset);
    if (d.offset > rx.next) {
      rx.held.set(d.offset, d.data);
      for (let o = rx.next; o < d.offset; o += chunkSize) this.#nak(o);
      return;
    }
    this.#deliver(d);
    for (let c = rx.held.get(rx.next); c; c = rx.held.get(rx.next)) {
      rx.held.delete(rx.next);
      this.#deliver(event({ type: 'ImageData', offset: rx.next, data: c }));
    }
  }

  #deliver(d: ImageData): void {
    this.#ready.push(d);
    this.#rx!.next = d.offset + d.data.length;
  }

  /**
   * NAKs a missing chunk, unless it was NAKed within the last `window` frames: its
   * retransmission queues behind at most window - 1 frames, so once `window`
   * frames went by without it, it was lost again and is NAKed again.
   */
  #nak(missing: number): void {
    const rx = this.#rx!;
    if (missing >= rx.length || missing < rx.next || rx.held.has(missing)) return;
    const last = rx.nakked.get(missing);
    if (last !== undefined && rx.frames - last < this.#link.windowSize) return;
    rx.nakked.set(missing, rx.frames);
    this.queue(this.frame(event({ type: 'ImageNak', next: rx.acked, missing }), 0));
  }

  /** A damaged frame was most likely the oldest missing chunk (a lost retransmission) or the one after the newest. */
  protected override onCorrupt(): void {
    const rx = this.#rx;
    if (this.#state !== 'TRANSFER' || !rx) return;
    rx.frames++;
    this.#nak(rx.next);
    this.#nak(rx.highestEnd);
  }
}
