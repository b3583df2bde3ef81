import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageSink, PARALLEL_MIN } from './image-sink.ts';

/** Pushes `data` in uneven chunks (socket-sized and odd), as a download does. */
async function pushUneven(sink: ImageSink, data: Uint8Array): Promise<void> {
  const sizes = [65536, 1, 4093, 1 << 20, 300_000];
  for (let at = 0, i = 0; at < data.byteLength; i++) {
    const n = Math.min(sizes[i % sizes.length]!, data.byteLength - at);
    await sink.push(data.subarray(at, at + n));
    at += n;
  }
}

const hex = (alg: string, data: Uint8Array) => createHash(alg).update(data).digest('hex');

describe('ImageSink', () => {
  for (const [mode, expectedBytes] of [['sha512 on a worker thread, sha256 on the receiving one', PARALLEL_MIN], ['both on the receiving thread', 1]] as const) {
    it(`writes and hashes every byte in order, ${mode}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'upfleet-sink-'));
      const data = randomBytes((5 << 20) + 12_345);
      const prefix = randomBytes(1000);
      writeFileSync(join(dir, 'img'), prefix);
      const sink = new ImageSink(['sha256', 'sha512'], expectedBytes);
      try {
        // A resumed download: the bytes already on disk are hashed first, then the rest is written after them.
        await sink.push(prefix);
        await sink.flush();
        const file = await open(join(dir, 'img'), 'r+');
        sink.writeTo(file, prefix.byteLength);
        await pushUneven(sink, data);
        const digests = await sink.digestHex();
        await file.close();
        const whole = Buffer.concat([prefix, data]);
        assert.deepEqual(digests, { sha256: hex('sha256', whole), sha512: hex('sha512', whole) });
        assert.equal(sink.length, whole.byteLength);
        assert.equal(sink.written, whole.byteLength);
        assert.ok(readFileSync(join(dir, 'img')).equals(whole));
      } finally {
        await sink.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('reports a failed write, and counts as written only what reached the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'upfleet-sink-'));
    writeFileSync(join(dir, 'img'), '');
    const readOnly = await open(join(dir, 'img'), 'r');
    const sink = new ImageSink(['sha256'], PARALLEL_MIN);
    try {
      sink.writeTo(readOnly, 0);
      await assert.rejects(async () => {
        await pushUneven(sink, randomBytes(3 << 20));
        await sink.flush();
      }, { code: 'EBADF' });
      assert.equal(sink.written, 0);
    } finally {
      await readOnly.close();
      await sink.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
