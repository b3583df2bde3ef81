/**
 * What both sessions share: the receive buffer, frame parsing with version and
 * type checks, the ERROR latch, the queue of frames the session emits on its own
 * (retransmissions, NAKs, cached replies), and counters.
 *
 * Theory of operation (after h11): the transport calls `receive(bytes)` with
 * whatever arrived, then `nextEvent()` until NEED_DATA or PAUSED; it calls
 * `send(event)` and writes the returned bytes; after either it writes
 * `takeOutgoing()`. The session never performs I/O and never reads a clock.
 *
 * Invariants:
 * - Once a RemoteProtocolError or LinkTimeoutError is raised, the session is in
 *   ERROR and every later nextEvent() rethrows it until reset().
 * - A LocalProtocolError (our own misuse) changes nothing.
 */
import { decodePayload } from './decoder.ts';
import { encodePayload } from './encoder.ts';
import { LocalProtocolError, RemoteProtocolError } from './errors.ts';
import { FRAME_TYPES, PROTOCOL_VERSION, TYPE_OF_CODE, type Event, type EventType } from './events.ts';
import { encodeFrame, FrameBuffer, MAX_INCOMPLETE, type RawFrame } from './frame.ts';
import { PayloadError } from './wire.ts';

export interface LinkStats {
  framesSent: number;
  framesReceived: number;
  /** Frames dropped for bad CRC or COBS (line noise). */
  corrupt: number;
  /** Frames dropped as stale duplicates. */
  ignored: number;
  retransmits: number;
}

export interface SessionOptions {
  /** Receive-buffer cap for a run of bytes without a delimiter. */
  maxIncomplete?: number;
}

/** A decoded incoming frame. */
export interface Incoming {
  readonly type: EventType;
  readonly seq: number;
  readonly payload: Uint8Array;
}

export abstract class LinkSession<S extends string> {
  readonly stats: LinkStats = { framesSent: 0, framesReceived: 0, corrupt: 0, ignored: 0, retransmits: 0 };
  protected buffer: FrameBuffer;
  protected error: Error | undefined;
  #outgoing: Uint8Array[] = [];

  protected constructor(options: SessionOptions) {
    this.buffer = new FrameBuffer(options.maxIncomplete ?? MAX_INCOMPLETE);
  }

  abstract get state(): S;

  /** Buffers bytes from the transport; parsing happens in nextEvent(). */
  receive(bytes: Uint8Array): void {
    this.buffer.append(bytes);
  }

  /** Frames the session emitted on its own since the last call; write them to the transport. */
  takeOutgoing(): Uint8Array {
    const parts = this.#outgoing;
    this.#outgoing = [];
    if (parts.length === 1) return parts[0]!;
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  protected queue(bytes: Uint8Array): void {
    this.#outgoing.push(bytes);
  }

  /** Clears everything but the counters; the session starts over in its initial state. */
  reset(): void {
    this.buffer.clear();
    this.error = undefined;
    this.#outgoing = [];
  }

  /** Enters ERROR and returns the error for the caller to throw. */
  protected fail<E extends Error>(e: E): E {
    this.error = e;
    return e;
  }

  protected remote(reason: string, cause?: unknown): RemoteProtocolError {
    return this.fail(new RemoteProtocolError(this.state, reason, cause === undefined ? undefined : { cause }));
  }

  /**
   * The next well-formed frame, or undefined when more bytes are needed.
   * Counts and skips line damage.
   * @throws RemoteProtocolError on overflow, an unknown version or type.
   */
  protected nextFrame(): Incoming | undefined {
    for (;;) {
      const r = this.buffer.next();
      if (r.kind === 'need-data') return undefined;
      if (r.kind === 'overflow') throw this.remote(`${r.buffered} bytes without a frame delimiter`);
      if (r.kind === 'corrupt') {
        this.stats.corrupt++;
        this.onCorrupt();
        continue;
      }
      this.stats.framesReceived++;
      return this.#check(r.frame);
    }
  }

  /** Hook: a damaged frame was dropped (the ECU uses it to NAK early). */
  protected onCorrupt(): void {}

  #check(f: RawFrame): Incoming {
    if (f.version !== PROTOCOL_VERSION) throw this.remote(`frame version ${f.version}, expected ${PROTOCOL_VERSION}`);
    const type = TYPE_OF_CODE.get(f.typeCode);
    if (!type) throw this.remote(`unknown frame type 0x${f.typeCode.toString(16)}`);
    return { type, seq: f.seq, payload: f.payload };
  }

  /** @throws RemoteProtocolError for a malformed payload. */
  protected decode(f: Incoming): Event {
    try {
      return decodePayload(f.type, f.payload);
    } catch (e) {
      if (e instanceof PayloadError) throw this.remote(`${f.type}: ${e.message}`, e);
      throw e;
    }
  }

  /** @throws LocalProtocolError when a field is out of range. */
  protected frame(e: Event, seq: number): Uint8Array {
    let payload: Uint8Array;
    try {
      payload = encodePayload(e);
    } catch (err) {
      if (err instanceof RangeError) throw new LocalProtocolError(this.state, `encode ${e.type}: ${err.message}`);
      throw err;
    }
    this.stats.framesSent++;
    return encodeFrame({ version: PROTOCOL_VERSION, typeCode: FRAME_TYPES[e.type], seq, payload });
  }

  protected throwIfError(): void {
    if (this.error) throw this.error;
  }
}
