/**
 * Progress of a long image transfer in `upfleet-repo` (add-target, sign-delegated):
 * hashing a file into the local blob store, or uploading it to a server. On a
 * terminal, one line redrawn in place at most ten times a second; otherwise
 * only the final line, so logs and pipes get one line per image.
 */
import { formatBytes, formatBytesOf } from '@upfleet/core/format-bytes.ts';

export interface ImageProgress {
  /** `hashing`: into DIR's blob store; `uploading`: to --remote, which hashes as it receives. */
  phase: 'hashing' | 'uploading';
  name: string;
  done: number;
  total: number;
  /** Set once, when the repository has stored the image. */
  finished?: boolean;
}

/** Passes `source` through, reporting each chunk's length. */
export async function* countBytes(source: AsyncIterable<Uint8Array>, onBytes: (n: number) => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    onBytes(chunk.byteLength);
    yield chunk;
  }
}

const WIDTH = 24;
const REDRAW_MS = 100;
const PAST: Record<ImageProgress['phase'], string> = { hashing: 'hashed', uploading: 'uploaded' };

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

export class ProgressLine {
  #startedAt: number | undefined;
  #lastDraw = -Infinity;

  constructor(
    private readonly write: (text: string) => void,
    private readonly tty: boolean,
    private readonly now: () => number = () => performance.now(),
  ) {}

  update(p: ImageProgress): void {
    const t = this.now();
    this.#startedAt ??= t;
    if (p.finished) return this.#finish(p, t);
    if (!this.tty || t - this.#lastDraw < REDRAW_MS) return;
    this.#lastDraw = t;
    const ratio = p.total > 0 ? Math.min(1, p.done / p.total) : 1;
    const filled = Math.round(ratio * WIDTH);
    const rate = t > this.#startedAt ? `  ${formatBytes((p.done * 1000) / (t - this.#startedAt))}/s` : '';
    this.write(`\r\x1b[2K${p.phase} ${p.name} [${'#'.repeat(filled)}${'-'.repeat(WIDTH - filled)}] ${String(Math.floor(ratio * 100)).padStart(3)}% ${formatBytesOf(p.done, p.total)}${rate}`);
  }

  #finish(p: ImageProgress, t: number): void {
    const took = t - this.#startedAt!;
    const rate = took > 0 ? ` (${formatBytes((p.total * 1000) / took)}/s)` : '';
    this.write(`${this.tty ? '\r\x1b[2K' : ''}${PAST[p.phase]} ${p.name}: ${formatBytes(p.total)} in ${seconds(took)}${rate}\n`);
    this.#startedAt = undefined;
    this.#lastDraw = -Infinity;
  }
}
