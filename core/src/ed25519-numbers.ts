/** The numbers of ed25519 that strict verification checks against, shared by both providers. */

/** The field prime p = 2^255 - 19. */
export const P = 2n ** 255n - 19n;
/** The order L of the base point: S must be below it. */
export const L = 2n ** 252n + 27742317777372353535851937790883648493n;

/** Little-endian bytes (encodings of points and scalars) as an integer. */
export function littleEndian(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.byteLength - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]!);
  return n;
}
