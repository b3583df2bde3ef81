/**
 * Big-endian field readers and writers for frame payloads. The reader never reads
 * past its bytes: a short or overlong field throws PayloadError, which the session
 * turns into a RemoteProtocolError naming its state.
 */
import { fromHex, toHex } from '../bytes.ts';
import type { Hashes } from './events.ts';

export class PayloadError extends Error {
  override name = 'PayloadError';
}

export class Writer {
  #parts: number[] = [];
  #chunks: Uint8Array[] = [];

  u8(v: number): this {
    this.#parts.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.u8(v >>> 8).u8(v);
  }
  u32(v: number): this {
    return this.u16(v >>> 16).u16(v & 0xffff);
  }
  bytes(b: Uint8Array): this {
    this.#flush();
    this.#chunks.push(b);
    return this;
  }
  /** Bytes with a u8 length prefix. */
  bytes8(b: Uint8Array): this {
    if (b.length > 0xff) throw new RangeError(`field of ${b.length} bytes exceeds 255`);
    return this.u8(b.length).bytes(b);
  }
  /** Bytes with a u16 length prefix. */
  bytes16(b: Uint8Array): this {
    if (b.length > 0xffff) throw new RangeError(`field of ${b.length} bytes exceeds 65535`);
    return this.u16(b.length).bytes(b);
  }
  str8(s: string): this {
    return this.bytes8(new TextEncoder().encode(s));
  }
  str16(s: string): this {
    return this.bytes16(new TextEncoder().encode(s));
  }
  hashes(h: Hashes): this {
    const entries = Object.entries(h).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    this.u8(entries.length);
    for (const [alg, hex] of entries) {
      const digest = fromHex(hex);
      if (!digest) throw new RangeError(`hash ${alg} is not hex`);
      this.str8(alg).bytes8(digest);
    }
    return this;
  }
  #flush(): void {
    if (this.#parts.length > 0) this.#chunks.push(Uint8Array.from(this.#parts));
    this.#parts = [];
  }
  finish(): Uint8Array {
    this.#flush();
    const out = new Uint8Array(this.#chunks.reduce((n, c) => n + c.length, 0));
    let o = 0;
    for (const c of this.#chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

export class Reader {
  #o = 0;
  constructor(private readonly b: Uint8Array) {}

  #need(n: number, what: string): void {
    if (this.#o + n > this.b.length) throw new PayloadError(`truncated ${what}`);
  }
  u8(what = 'u8'): number {
    this.#need(1, what);
    return this.b[this.#o++]!;
  }
  u16(what = 'u16'): number {
    this.#need(2, what);
    const v = (this.b[this.#o]! << 8) | this.b[this.#o + 1]!;
    this.#o += 2;
    return v;
  }
  u32(what = 'u32'): number {
    return this.u16(what) * 0x10000 + this.u16(what);
  }
  bytes(n: number, what = 'bytes'): Uint8Array {
    this.#need(n, what);
    const out = this.b.slice(this.#o, this.#o + n);
    this.#o += n;
    return out;
  }
  bytes8(what: string): Uint8Array {
    return this.bytes(this.u8(what), what);
  }
  bytes16(what: string): Uint8Array {
    return this.bytes(this.u16(what), what);
  }
  rest(): Uint8Array {
    return this.bytes(this.b.length - this.#o);
  }
  str8(what: string): string {
    return this.#utf8(this.bytes8(what), what);
  }
  str16(what: string): string {
    return this.#utf8(this.bytes16(what), what);
  }
  hashes(what: string): Record<string, string> {
    const n = this.u8(what);
    const out: Record<string, string> = {};
    for (let i = 0; i < n; i++) {
      const alg = this.str8(what);
      if (Object.hasOwn(out, alg) || alg === '__proto__') throw new PayloadError(`${what}: ${alg} twice or reserved`);
      out[alg] = toHex(this.bytes8(what));
    }
    return out;
  }
  #utf8(b: Uint8Array, what: string): string {
    try {
      return utf8Strict.decode(b);
    } catch {
      throw new PayloadError(`${what}: not UTF-8`);
    }
  }
  /** @throws PayloadError when bytes remain. */
  end(what: string): void {
    if (this.#o !== this.b.length) throw new PayloadError(`${this.b.length - this.#o} trailing byte(s) in ${what}`);
  }
}
