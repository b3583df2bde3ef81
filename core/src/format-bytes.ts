/**
 * Byte counts as people read them: binary prefixes (KiB, MiB, GiB: IEC 80000-13,
 * powers of 1024) with three significant digits, whole bytes below 1 KiB.
 * A pair (done of total) shares the unit of the total, so a progress line
 * keeps its width and never shows a small image as 0.0/0.0.
 */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

interface Scale {
  unit: (typeof UNITS)[number];
  divisor: number;
  decimals: number;
}

/** The unit and precision for `n` bytes: the largest unit with a value of at least 1, three significant digits. */
function scaleFor(n: number): Scale {
  let i = 0;
  while (i < UNITS.length - 1 && Math.abs(n) >= 1024 ** (i + 1)) i++;
  if (i === 0) return { unit: 'B', divisor: 1, decimals: 0 };
  const value = Math.abs(n) / 1024 ** i;
  return { unit: UNITS[i]!, divisor: 1024 ** i, decimals: value < 10 ? 2 : value < 100 ? 1 : 0 };
}

function render(n: number, s: Scale): string {
  return (n / s.divisor).toFixed(s.decimals);
}

/** `29.3 KiB`, `1.50 MiB`, `191 MiB`, `512 B`. */
export function formatBytes(n: number): string {
  const s = scaleFor(n);
  return `${render(n, s)} ${s.unit}`;
}

/** `12.0/29.3 KiB`: `done` in the unit and precision of `total`. */
export function formatBytesOf(done: number, total: number): string {
  const s = scaleFor(Math.max(done, total));
  return `${render(done, s)}/${render(total, s)} ${s.unit}`;
}
