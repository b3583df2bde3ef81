/**
 * Consistent Overhead Byte Stuffing (Cheshire and Baker, 1999). The encoded form
 * contains no 0x00 byte, so 0x00 delimits frames on the wire and a receiver can
 * resynchronise at the next delimiter after any corruption.
 * Overhead: at most one byte per 254 bytes of input, plus one.
 */

/** The largest encoded size of `n` input bytes (without the delimiter). */
export function cobsMaxEncodedLength(n: number): number {
  return n + Math.ceil(n / 254) + 1;
}

export function cobsEncode(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(cobsMaxEncodedLength(data.length));
  let codeIndex = 0;
  let code = 1;
  let o = 1;
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b !== 0) {
      out[o++] = b;
      code++;
    }
    if (b === 0 || code === 0xff) {
      out[codeIndex] = code;
      codeIndex = o++;
      code = 1;
    }
  }
  out[codeIndex] = code;
  return out.subarray(0, o);
}

/** The decoded bytes, or undefined when `data` is not valid COBS (a 0x00, or a code running past the end). */
export function cobsDecode(data: Uint8Array): Uint8Array | undefined {
  const out = new Uint8Array(data.length);
  let o = 0;
  let i = 0;
  while (i < data.length) {
    const code = data[i++]!;
    if (code === 0) return undefined;
    const end = i + code - 1;
    if (end > data.length) return undefined;
    for (; i < end; i++) {
      const b = data[i]!;
      if (b === 0) return undefined;
      out[o++] = b;
    }
    if (code !== 0xff && i < data.length) out[o++] = 0;
  }
  return out.subarray(0, o);
}
