/**
 * Frees the read buffers of a long download or image copy as it goes.
 *
 * Every socket or file-stream read hands out a fresh off-heap buffer (64 KiB
 * for a socket, the stream's highWaterMark for a file); its memory is
 * returned only when V8 collects the small Buffer object that owns it. During a
 * download almost nothing else is allocated on the JavaScript heap, so V8's
 * young generation fills slowly and it collects only when its external-memory
 * pressure limit is reached: ~36 MB of dead buffers at any moment (measured
 * with process.memoryUsage().arrayBuffers during bench/agent.ts's download). A minor
 * (young-generation) collection every few MiB received keeps that to a few MB,
 * at a cost of well under a millisecond each.
 *
 * Invariants:
 * - Only young-generation collections are triggered, never a full one.
 * - Without a gc function (V8 refuses the flag), `received` does nothing: the
 *   memory bound is lost, never correctness.
 */

type GcFunction = (options: { type: 'minor'; execution: 'sync' }) => void;

/** Bytes received between two young-generation collections, for a download or copy. */
export const RELEASE_EVERY_BYTES = 4 << 20;

let cached: GcFunction | null | undefined;

/** V8's gc function, exposed in a fresh context (the global one is not touched). */
function gcFunction(): GcFunction | null {
  if (cached !== undefined) return cached;
  try {
    // Loaded here, not imported: node:v8 and node:vm cost about 2 ms to load, which every
    // short-lived CLI (upfleet-tuf, started per conformance step) would pay for nothing.
    process.getBuiltinModule('node:v8').setFlagsFromString('--expose-gc');
    const gc: unknown = process.getBuiltinModule('node:vm').runInNewContext('gc');
    cached = typeof gc === 'function' ? (gc as GcFunction) : null;
  } catch {
    cached = null;
  }
  return cached;
}

/** Collects the young generation each `every` bytes reported to `received`. */
export class ReceiveBufferReleaser {
  #since = 0;

  constructor(private readonly every: number) {}

  received(bytes: number): void {
    this.#since += bytes;
    if (this.#since < this.every) return;
    this.#since = 0;
    // Looked up at the first release, not per response: most bodies (metadata) never reach one,
    // and the lookup creates a V8 context, a cost every short-lived CLI would pay.
    gcFunction()?.({ type: 'minor', execution: 'sync' });
  }
}
