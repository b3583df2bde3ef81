/**
 * Progress bars for a terminal: one line per ECU, redrawn in place with ANSI
 * cursor moves. Only used when the output is a TTY; otherwise the agent logs JSON.
 */
import { formatBytesOf } from '@upfleet/core/format-bytes.ts';
import type { ProgressEvent } from './cycle.ts';

const WIDTH = 30;

export function renderBar(p: ProgressEvent): string {
  const ratio = p.total > 0 ? Math.min(1, p.done / p.total) : 1;
  const filled = Math.round(ratio * WIDTH);
  const pct = String(Math.floor(ratio * 100)).padStart(3);
  return `${p.ecuSerial.padEnd(14)} ${p.state.padEnd(11)} [${'#'.repeat(filled)}${'-'.repeat(WIDTH - filled)}] ${pct}% ${formatBytesOf(p.done, p.total)}`;
}

export class ProgressBars {
  #lines = new Map<string, string>();
  #drawn = 0;
  #last = 0;

  constructor(private readonly out: NodeJS.WriteStream) {}

  update(p: ProgressEvent): void {
    this.#lines.set(p.ecuSerial, renderBar(p));
    const t = Date.now();
    if (p.done < p.total && t - this.#last < 100) return; // at most 10 redraws a second
    this.#last = t;
    this.#draw();
  }

  #draw(): void {
    if (this.#drawn > 0) this.out.write(`\x1b[${this.#drawn}A`);
    for (const line of this.#lines.values()) this.out.write(`\x1b[2K${line}\n`);
    this.#drawn = this.#lines.size;
  }

  /** Leaves the final bars on screen. */
  finish(): void {
    if (this.#lines.size > 0) this.#draw();
    this.#lines.clear();
    this.#drawn = 0;
  }
}
