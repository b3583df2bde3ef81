/**
 * A serial line between two Duplex endpoints (in-process pairs, or a pty opened
 * with serialport), with the faults of a real one.
 *
 * Invariants:
 * - Pacing: each direction is a wire that carries baud/10 bytes per second (8N1:
 *   a start bit, 8 data bits, a stop bit). A byte leaves no earlier than the wire
 *   is free; times are absolute (performance.now), so timer jitter never adds up.
 * - Faults are drawn from a seeded PRNG: bit errors at rate `ber` per data bit
 *   (geometric gaps, so cost does not depend on the rate), byte drops at
 *   `dropRate` per byte, and a fixed `latencyMs` after the last bit.
 * - While disconnected, both directions lose everything, queued bytes included.
 */
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { prng } from '@upfleet/core';

export interface ChannelOptions {
  /** Line rate in bits per second; 0 means unpaced. */
  baud?: number;
  /** Bit error rate per data bit. */
  ber?: number;
  /** Probability a byte is lost. */
  dropRate?: number;
  latencyMs?: number;
}

export interface EmulatorOptions extends ChannelOptions {
  seed?: number;
  /** Overrides for one direction (a is the first endpoint). */
  aToB?: ChannelOptions;
  bToA?: ChannelOptions;
}

export interface ChannelStats {
  bytesIn: number;
  bytesOut: number;
  bitsFlipped: number;
  bytesDropped: number;
  bytesLostDisconnected: number;
}

class Channel {
  readonly stats: ChannelStats = { bytesIn: 0, bytesOut: 0, bitsFlipped: 0, bytesDropped: 0, bytesLostDisconnected: 0 };
  #queue: Array<{ at: number; bytes: Uint8Array }> = [];
  #wireFreeAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #bitsToError = Infinity;

  constructor(
    readonly options: Required<ChannelOptions>,
    private readonly rand: () => number,
    private readonly deliver: (b: Uint8Array) => void,
    private readonly isConnected: () => boolean,
  ) {
    this.#drawBitError();
  }

  #drawBitError(): void {
    const ber = this.options.ber;
    this.#bitsToError = ber > 0 ? Math.floor(Math.log(1 - this.rand()) / Math.log(1 - ber)) : Infinity;
  }

  set(options: ChannelOptions): void {
    Object.assign(this.options, options);
    this.#drawBitError();
  }

  push(input: Uint8Array): void {
    this.stats.bytesIn += input.length;
    if (!this.isConnected()) {
      this.stats.bytesLostDisconnected += input.length;
      return;
    }
    const { baud, latencyMs } = this.options;
    const bytesPerMs = baud / 10 / 1000;
    // Pieces of about 2 ms of line time, so the receiver sees a steady trickle.
    const piece = baud > 0 ? Math.max(16, Math.floor(bytesPerMs * 2)) : input.length;
    const now = performance.now();
    for (let o = 0; o < input.length; o += piece) {
      const bytes = this.#damage(input.subarray(o, o + piece));
      let at = now + latencyMs;
      if (baud > 0) {
        const start = Math.max(now, this.#wireFreeAt);
        this.#wireFreeAt = start + Math.min(piece, input.length - o) / bytesPerMs;
        at = this.#wireFreeAt + latencyMs;
      }
      if (bytes.length > 0) this.#queue.push({ at, bytes });
    }
    this.#schedule();
  }

  #damage(src: Uint8Array): Uint8Array {
    const out = Uint8Array.from(src);
    let n = 0;
    for (let i = 0; i < out.length; i++) {
      if (this.options.dropRate > 0 && this.rand() < this.options.dropRate) {
        this.stats.bytesDropped++;
        continue;
      }
      let b = out[i]!;
      if (this.#bitsToError < 8) {
        let bit = this.#bitsToError;
        while (bit < 8) {
          b ^= 1 << bit;
          this.stats.bitsFlipped++;
          this.#drawBitError();
          bit += 1 + this.#bitsToError;
        }
        this.#bitsToError = bit - 8;
      } else {
        this.#bitsToError -= 8;
      }
      out[n++] = b;
    }
    return out.subarray(0, n);
  }

  #schedule(): void {
    if (this.#timer || this.#queue.length === 0) return;
    const delay = Math.max(0, this.#queue[0]!.at - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const now = performance.now();
      const due: Uint8Array[] = [];
      while (this.#queue.length > 0 && this.#queue[0]!.at <= now + 0.5) due.push(this.#queue.shift()!.bytes);
      if (due.length > 0 && this.isConnected()) {
        const joined = Buffer.concat(due);
        this.stats.bytesOut += joined.length;
        this.deliver(joined);
      }
      this.#schedule();
    }, delay);
  }

  flush(lost: boolean): void {
    if (lost) for (const q of this.#queue) this.stats.bytesLostDisconnected += q.bytes.length;
    this.#queue = [];
    this.#wireFreeAt = 0;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

export class LinkEmulator {
  readonly aToB: Channel;
  readonly bToA: Channel;
  #connected = true;
  #closed = false;
  readonly #onA = (b: Buffer) => this.aToB.push(b);
  readonly #onB = (b: Buffer) => this.bToA.push(b);

  constructor(readonly a: Duplex, readonly b: Duplex, options: EmulatorOptions = {}) {
    const base: Required<ChannelOptions> = {
      baud: options.baud ?? 0, ber: options.ber ?? 0, dropRate: options.dropRate ?? 0, latencyMs: options.latencyMs ?? 0,
    };
    const rand = prng(options.seed ?? 1);
    const connected = () => this.#connected && !this.#closed;
    this.aToB = new Channel({ ...base, ...options.aToB }, rand, (x) => b.write(x), connected);
    this.bToA = new Channel({ ...base, ...options.bToA }, rand, (x) => a.write(x), connected);
    a.on('data', this.#onA);
    b.on('data', this.#onB);
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** Changes faults or pacing in both directions from now on. */
  set(options: ChannelOptions): void {
    this.aToB.set(options);
    this.bToA.set(options);
  }

  /** The line goes dead in both directions; bytes in flight are lost. */
  disconnect(): void {
    this.#connected = false;
    this.aToB.flush(true);
    this.bToA.flush(true);
  }

  reconnect(): void {
    this.#connected = true;
  }

  /** Stops forwarding; the endpoints stay open (their owners close them). */
  close(): void {
    this.#closed = true;
    this.a.off('data', this.#onA);
    this.b.off('data', this.#onB);
    this.aToB.flush(false);
    this.bToA.flush(false);
  }
}
