/**
 * Serial link goodput: one install per case through the link emulator pacing at
 * the baud rate (8N1: 10 line bits per byte), clean and at a bit error rate.
 * Prints one JSON line per case:
 *   goodputRatio = image bytes per second / (baud / 10)   (the baseline: the line rate)
 *   integrity    = the ECU's inactive slot is byte-exact after the install
 * Goals: >= 0.95 clean, >= 0.85 at BER 1e-5, integrity always.
 * Usage: npm run bench:serial [-- --seconds 6] [--seed 1] [--baud N] [--chunk N --window N]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { bytesEqual, digestHex, Ed25519Signer } from '@upfleet/core';
import { rtoForLine, SerialSecondary, windowForLine } from '../agent/src/secondaries/serial-secondary.ts';
import { connectInProcess, makeUpdateFixture, prng, SimulatedEcu } from '../device-sim/src/index.ts';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '6' }, chunk: { type: 'string' }, window: { type: 'string' }, seed: { type: 'string', default: '1' }, baud: { type: 'string' } },
});
const seconds = Number(values.seconds);

async function runCase(baud: number, ber: number, seed: number) {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-bench-serial-'));
  try {
    const size = Math.round((baud / 10) * seconds);
    const r = prng(seed);
    const bytes = new Uint8Array(size).map(() => Math.floor(r() * 256));
    const fx = makeUpdateFixture({ now: new Date(), images: [{ ecuSerial: 'ecu-b', hardwareId: 'hw-b', name: 'fw.bin', bytes }] });
    const ecu = new SimulatedEcu({ dir, ecuSerial: 'ecu-b', hardwareId: 'hw-b', signer: Ed25519Signer.generate(), verification: 'partial', directorRoot: fx.directorRoot });
    const link = connectInProcess(ecu, { baud, ber, seed });
    const maxChunk = values.chunk ? Number(values.chunk) : undefined;
    const maxWindow = values.window ? Number(values.window) : windowForLine(baud, maxChunk);
    const secondary = new SerialSecondary(link.primary, {
      ecuSerial: 'ecu-b', rtoMs: rtoForLine(baud, maxChunk, maxWindow), maxAttempts: 10, maxWindow, ...(maxChunk && { maxChunk }),
    });
    await secondary.putMetadata(fx.bundle());
    const image = {
      name: 'fw.bin', length: size, hashes: { sha256: digestHex('sha256', bytes) }, releaseCounter: 0,
      async *open(offset: number) {
        for (let o = offset; o < size; o += 8192) yield bytes.subarray(o, Math.min(o + 8192, size));
      },
    };
    const t0 = performance.now();
    await secondary.install(image);
    const elapsed = (performance.now() - t0) / 1000;
    const integrity = bytesEqual(ecu.store.readInactive(), bytes);
    const n = secondary.session.negotiated!;
    const out = {
      bench: 'serial', baud, ber, bytes: size, seconds: Number(elapsed.toFixed(3)),
      goodputBytesPerSecond: Math.round(size / elapsed),
      lineBytesPerSecond: baud / 10,
      goodputRatio: Number((size / elapsed / (baud / 10)).toFixed(4)),
      integrity,
      chunk: n.chunkSize, window: n.windowSize,
      retransmits: secondary.session.stats.retransmits,
      corruptFramesAtEcu: link.endpoint.session.stats.corrupt,
      bitsFlipped: link.emulator!.aToB.stats.bitsFlipped + link.emulator!.bToA.stats.bitsFlipped,
    };
    await secondary.close();
    await link.close();
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let seed = Number(values.seed);
for (const baud of values.baud ? [Number(values.baud)] : [115_200, 921_600]) {
  for (const ber of [0, 1e-5]) console.log(JSON.stringify(await runCase(baud, ber, seed++)));
}
