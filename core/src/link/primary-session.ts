/**
 * The primary's side of the link: requests with stop-and-wait retransmission,
 * and the image data sender (selective repeat with cumulative acks).
 *
 * Invariants:
 * - At most one request is outstanding; its reply must carry its sequence number.
 *   Replies with another sequence are stale duplicates and are ignored.
 * - Timers are the transport's: `deadline()` says when `timeout(now)` must be
 *   called; `timeout` returns the frames to retransmit, or throws LinkTimeoutError
 *   after `maxAttempts` sends of one request or chunk.
 * - The data RTO adapts (Jacobson/Karels, RFC 6298) to the round trips the acks
 *   show, including time spent queued behind the window on a slow line, with Karn's
 *   rule (no samples from resent chunks or from chunks held behind a gap);
 *   `rtoMs` is its floor (8 x rtoMs its ceiling) and the request RTO.
 * - Each retransmission doubles the wait for that request or chunk (RFC 6298 5.5),
 *   up to the 8 x rtoMs ceiling: an ECU (or a primary) slowed by CPU load, e.g. an
 *   ECU running its full verification on a busy machine, gets
 *   rtoMs x (1 + 2 + 4 + 8 + 8) = 23 x rtoMs to answer before the link gives up
 *   after the default 5 sends, instead of 5 x rtoMs.
 * - In TRANSFER, at most `windowSize` chunks are unacknowledged; each keeps its
 *   frame bytes until a cumulative ack covers it, so a NAK or a timeout resends
 *   exactly that frame. Chunks are sent in order and all but the last are
 *   exactly `chunkSize` bytes, which lets the ECU name a missing chunk by offset.
 * - An unsolicited refusal (sequence 0) ends whatever was pending.
 */
import { LinkSession, type SessionOptions } from './connection.ts';
import { LinkTimeoutError, LocalProtocolError } from './errors.ts';
import {
  MAX_CHUNK, NEED_DATA, PROTOCOL_VERSION, REPLIES_TO, REQUEST_TYPES,
  type EcuInfo, type Event, type Hello, type ImageAck, type ImageNak, type NextEvent, type Request,
} from './events.ts';
import { PRIMARY_TABLE, type PrimaryState } from './state.ts';

export interface PrimaryOptions extends SessionOptions {
  /** The largest chunk and window this primary offers in Hello. */
  maxChunk?: number;
  maxWindow?: number;
  /** Retransmission timeout in the transport's clock units (ms). */
  rtoMs?: number;
  /** Sends of one request or chunk before LinkTimeoutError. */
  maxAttempts?: number;
}

/** Defaults chosen by bench/serial.ts: 512-byte chunks keep a frame's error odds low at BER 1e-5. */
export const PRIMARY_DEFAULTS = { maxChunk: 512, maxWindow: 16, rtoMs: 1000, maxAttempts: 5 } as const;

export interface Negotiated {
  readonly version: number;
  readonly chunkSize: number;
  readonly windowSize: number;
  readonly info: EcuInfo;
}

interface Pending {
  readonly request: Request;
  readonly seq: number;
  readonly bytes: Uint8Array;
  deadline: number;
  attempts: number;
}

interface InFlight {
  readonly offset: number;
  readonly length: number;
  readonly bytes: Uint8Array;
  readonly sentAt: number;
  deadline: number;
  attempts: number;
}

export interface TransferProgress {
  readonly length: number;
  /** Every byte before this is stored on the ECU. */
  readonly acked: number;
  /** The next offset to send. */
  readonly nextOffset: number;
  readonly inFlight: number;
}

export class PrimarySession extends LinkSession<PrimaryState> {
  readonly options: Required<Omit<PrimaryOptions, 'maxIncomplete'>>;
  #state: Exclude<PrimaryState, 'ERROR'> = 'IDLE';
  #seq = 0;
  #now = 0;
  #pending: Pending | undefined;
  #negotiated: Negotiated | undefined;
  #begin: { length: number } | undefined;
  #transfer: { length: number; acked: number; nextOffset: number; inFlight: Map<number, InFlight> } | undefined;
  #rtt: { srtt: number; rttvar: number } | undefined;

  constructor(options: PrimaryOptions = {}) {
    super(options);
    this.options = {
      maxChunk: Math.min(options.maxChunk ?? PRIMARY_DEFAULTS.maxChunk, MAX_CHUNK),
      maxWindow: options.maxWindow ?? PRIMARY_DEFAULTS.maxWindow,
      rtoMs: options.rtoMs ?? PRIMARY_DEFAULTS.rtoMs,
      maxAttempts: options.maxAttempts ?? PRIMARY_DEFAULTS.maxAttempts,
    };
  }

  get state(): PrimaryState {
    return this.error ? 'ERROR' : this.#state;
  }

  /** Chunk size, window and ECU info from the last HelloReply. */
  get negotiated(): Negotiated | undefined {
    return this.#negotiated;
  }

  get transfer(): TransferProgress | undefined {
    const t = this.#transfer;
    return t && { length: t.length, acked: t.acked, nextOffset: t.nextOffset, inFlight: t.inFlight.size };
  }

  /** True when send(ImageData) would be accepted for the next chunk. */
  get windowOpen(): boolean {
    const t = this.#transfer;
    return this.state === 'TRANSFER' && !!t && t.inFlight.size < this.#negotiated!.windowSize && t.nextOffset < t.length;
  }

  /** The current retransmission timeout for image chunks. */
  get dataRtoMs(): number {
    const r = this.#rtt;
    return r ? Math.min(8 * this.options.rtoMs, Math.max(this.options.rtoMs, Math.ceil(r.srtt + 4 * r.rttvar))) : this.options.rtoMs;
  }

  #sampleRtt(sample: number): void {
    const r = this.#rtt;
    if (!r) this.#rtt = { srtt: sample, rttvar: sample / 2 };
    else {
      r.rttvar = 0.75 * r.rttvar + 0.25 * Math.abs(r.srtt - sample);
      r.srtt = 0.875 * r.srtt + 0.125 * sample;
    }
  }

  /** A Hello event offering this primary's limits. */
  hello(): Hello {
    return { type: 'Hello', versions: [PROTOCOL_VERSION], maxChunk: this.options.maxChunk, maxWindow: this.options.maxWindow };
  }

  /** Starts over in IDLE; the RTT estimate survives (it describes the line, not the session). */
  override reset(): void {
    super.reset();
    this.#state = 'IDLE';
    this.#pending = undefined;
    this.#negotiated = undefined;
    this.#transfer = undefined;
  }

  /**
   * Frames one request or image chunk; `now` starts its retransmission timer.
   * @throws LocalProtocolError when the event is not allowed in this state.
   */
  send(e: Event, now: number): Uint8Array {
    this.#now = now;
    if (this.error) throw new LocalProtocolError('ERROR', `send ${e.type}`);
    if (e.type === 'ImageData') return this.#sendData(e.offset, e.data, now);
    if (!REQUEST_TYPES.has(e.type)) throw new LocalProtocolError(this.#state, `send ${e.type} (not a request)`);
    const request = e as Request;
    this.#checkRequestAllowed(request);
    this.#seq = this.#seq === 0xffff ? 1 : this.#seq + 1;
    const bytes = this.frame(request, this.#seq);
    this.#pending = { request, seq: this.#seq, bytes, deadline: now + this.options.rtoMs, attempts: 1 };
    if (request.type === 'Hello') this.#transfer = undefined;
    if (request.type === 'ImageBegin') this.#begin = { length: request.length };
    if (request.type === 'Abort') this.#transfer = undefined;
    this.#state = 'AWAIT_REPLY';
    return bytes;
  }

  #checkRequestAllowed(r: Request): void {
    const s = this.#state;
    const ok =
      r.type === 'Hello' ? s !== 'AWAIT_REPLY'
      : r.type === 'Abort' ? s === 'READY' || s === 'TRANSFER'
      : r.type === 'ImageEnd' ? s === 'TRANSFER' && this.#transfer!.acked === this.#transfer!.length
      : s === 'READY';
    if (!ok) throw new LocalProtocolError(s, `send ${r.type}`);
  }

  #sendData(offset: number, data: Uint8Array, now: number): Uint8Array {
    const t = this.#transfer;
    const n = this.#negotiated;
    if (this.#state !== 'TRANSFER' || !t || !n) throw new LocalProtocolError(this.#state, 'send ImageData');
    const end = offset + data.length;
    if (offset !== t.nextOffset) throw new LocalProtocolError('TRANSFER', `send chunk at ${offset}, next is ${t.nextOffset}`);
    if (data.length === 0 || data.length > n.chunkSize || end > t.length || (data.length !== n.chunkSize && end !== t.length)) {
      throw new LocalProtocolError('TRANSFER', `send a ${data.length}-byte chunk at ${offset} (chunk ${n.chunkSize}, length ${t.length})`);
    }
    if (t.inFlight.size >= n.windowSize) throw new LocalProtocolError('TRANSFER', 'send past the window');
    const bytes = this.frame({ type: 'ImageData', offset, data }, 0);
    t.inFlight.set(offset, { offset, length: data.length, bytes, sentAt: now, deadline: now + this.dataRtoMs, attempts: 1 });
    t.nextOffset = end;
    return bytes;
  }

  /** The earliest time timeout() has work to do, or undefined when nothing waits. */
  deadline(): number | undefined {
    if (this.error) return undefined;
    if (this.#pending) return this.#pending.deadline;
    let min: number | undefined;
    for (const c of this.#transfer?.inFlight.values() ?? []) if (min === undefined || c.deadline < min) min = c.deadline;
    return min;
  }

  /**
   * Retransmits whatever is overdue at `now`.
   * @returns the frames to write (possibly empty).
   * @throws LinkTimeoutError when a request or chunk has been sent maxAttempts times.
   */
  timeout(now: number): Uint8Array {
    this.#now = now;
    this.throwIfError();
    // Only the oldest overdue item is resent (as TCP does on RTO): the ECU likely
    // holds the later chunks, and NAKs any real gap once the oldest gets through.
    const overdue = (this.#pending ? [this.#pending] : [...(this.#transfer?.inFlight.values() ?? [])])
      .filter((d) => d.deadline <= now)
      .sort((a, b) => ('offset' in a && 'offset' in b ? a.offset - b.offset : 0));
    const oldest = overdue[0];
    if (!oldest) return new Uint8Array(0);
    if (oldest.attempts >= this.options.maxAttempts) {
      const what = 'request' in oldest ? oldest.request.type : `ImageData at ${oldest.offset}`;
      throw this.fail(new LinkTimeoutError(this.#state, what, oldest.attempts));
    }
    oldest.attempts++;
    this.stats.retransmits++;
    const base = this.#pending ? this.options.rtoMs : this.dataRtoMs;
    const rto = Math.min(8 * this.options.rtoMs, base * 2 ** (oldest.attempts - 1));
    for (const d of overdue) d.deadline = now + rto;
    this.queue(oldest.bytes);
    return this.takeOutgoing();
  }

  /**
   * The next reply, ack or nak from the ECU; NEED_DATA when none is buffered.
   * `now` (optional) dates retransmissions that a NAK triggers.
   * @throws RemoteProtocolError (then ERROR until reset)
   */
  nextEvent(now?: number): NextEvent {
    if (now !== undefined) this.#now = now;
    this.throwIfError();
    for (;;) {
      const f = this.nextFrame();
      if (!f) return NEED_DATA;
      const action = PRIMARY_TABLE[this.#state][f.type];
      if (action === undefined) throw this.remote(`unexpected ${f.type}`);
      const e = this.decode(f);
      if (action === 'ignore') {
        this.stats.ignored++;
        continue;
      }
      const result = this.#handle(e, f.seq);
      if (result) return result;
      this.stats.ignored++;
    }
  }

  #handle(e: Event, seq: number): Event | undefined {
    if (e.type === 'Refusal' && seq === 0) return this.#unsolicitedRefusal(e);
    if (e.type === 'ImageAck' || e.type === 'ImageNak') return this.#handleAck(e);
    const p = this.#pending;
    if (this.#state !== 'AWAIT_REPLY' || !p || seq !== p.seq) return undefined;
    if (!REPLIES_TO[p.request.type].includes(e.type)) throw this.remote(`${e.type} does not answer ${p.request.type}`);
    this.#pending = undefined;
    this.#state = this.#afterReply(p.request, e);
    return e;
  }

  #afterReply(request: Request, reply: Event): Exclude<PrimaryState, 'ERROR'> {
    if (reply.type === 'Refusal') {
      if (request.type === 'Hello' || reply.code === 'HELLO_REQUIRED') return 'IDLE';
      if (request.type === 'ImageEnd') this.#transfer = undefined;
      return this.#transfer ? 'TRANSFER' : 'READY';
    }
    switch (request.type) {
      case 'Hello':
        return this.#acceptHelloReply(request, reply);
      case 'ImageBegin': {
        const offset = (reply as { offset: number }).offset;
        const length = this.#begin!.length;
        if (offset > length) throw this.remote(`resume offset ${offset} past length ${length}`);
        this.#transfer = { length, acked: offset, nextOffset: offset, inFlight: new Map() };
        return 'TRANSFER';
      }
      case 'ImageEnd':
      case 'Abort':
        this.#transfer = undefined;
        return 'READY';
      case 'Activate':
        // The ECU reboots into the new slot: a new Hello is needed.
        this.#transfer = undefined;
        return 'IDLE';
      default:
        return this.#transfer ? 'TRANSFER' : 'READY';
    }
  }

  #acceptHelloReply(hello: Request & { type: 'Hello' }, reply: Event): 'READY' {
    if (reply.type !== 'HelloReply') throw this.remote(`${reply.type} does not answer Hello`);
    if (!hello.versions.includes(reply.version)) throw this.remote(`ECU chose version ${reply.version}`);
    if (reply.chunkSize > hello.maxChunk || reply.windowSize > hello.maxWindow) {
      throw this.remote(`ECU chose chunk ${reply.chunkSize}/window ${reply.windowSize} above the offer`);
    }
    this.#negotiated = { version: reply.version, chunkSize: reply.chunkSize, windowSize: reply.windowSize, info: reply.info };
    return 'READY';
  }

  #unsolicitedRefusal(e: Event & { type: 'Refusal' }): Event {
    this.#pending = undefined;
    this.#transfer = undefined;
    this.#state = e.code === 'HELLO_REQUIRED' || e.code === 'PROTOCOL' ? 'IDLE' : 'READY';
    return e;
  }

  #handleAck(e: ImageAck | ImageNak): Event | undefined {
    const t = this.#transfer;
    if (!t) return undefined;
    if (e.next > t.nextOffset) throw this.remote(`ack of ${e.next}, only ${t.nextOffset} sent`);
    if (e.next > t.acked) {
      const covered = [...t.inFlight.values()].filter((c) => c.offset + c.length <= e.next);
      for (const c of covered) t.inFlight.delete(c.offset);
      // Sample only an ack of exactly one chunk sent once: an ack that fills a gap
      // also covers chunks held behind it, whose delay is not a round trip (Karn).
      if (covered.length === 1 && covered[0]!.attempts === 1 && covered[0]!.offset === t.acked) {
        this.#sampleRtt(this.#now - covered[0]!.sentAt);
      }
      t.acked = e.next;
      // RFC 6298 5.3: progress restarts the timer, so chunks queued behind a
      // window on a slow line do not time out while acks keep coming.
      const restart = this.#now + this.dataRtoMs;
      for (const c of t.inFlight.values()) c.deadline = Math.max(c.deadline, restart);
    }
    if (e.type === 'ImageNak') {
      const c = t.inFlight.get(e.missing);
      if (c) {
        c.attempts++;
        c.deadline = this.#now + this.dataRtoMs;
        this.stats.retransmits++;
        this.queue(c.bytes);
      }
    }
    return e;
  }
}
