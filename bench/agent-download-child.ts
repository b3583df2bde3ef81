/**
 * bench/agent.ts helper, run as a child process: downloads one image from the
 * loopback URL with the agent's ImageCache (streaming sha256+sha512 and length
 * checks, partial file then rename), then hashes the same file from page cache
 * with the same algorithms, and prints one JSON line with both rates and the
 * process's peak RSS during the download. With a fourth argument `disk`, it then
 * writes as many bytes again in 4 MiB writes with one fdatasync at the end, in the
 * same directory (diskWriteMBps): the rate the disk allows any download there.
 *
 * bench/agent.ts bundles this file with esbuild and runs it with plain node (no
 * tsx, whose TypeScript compiler would add its own tens of MB), the way the
 * deployed agent runs its bundle. The peak is VmHWM after the download, with
 * the high-water mark reset (/proc/self/clear_refs) just before it starts, so
 * startup does not count.
 */
import { closeSync, createReadStream, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MultiHasher } from '@upfleet/core';
import { DEFAULT_LIMITS } from '../agent/src/config.ts';
import { HttpFetcher } from '../agent/src/fetcher.ts';
import { ImageCache, type ImageTarget } from '../agent/src/image-cache.ts';

const [base, targetJson, parent, disk] = process.argv.slice(2) as [string, string, string | undefined, string | undefined];
const target = JSON.parse(targetJson) as ImageTarget;
const dir = mkdtempSync(join(parent ?? tmpdir(), 'upfleet-bench-agent-'));

function peakRssMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / 2 ** 20;
}

/** Resets VmHWM to the current RSS (Linux >= 4.0); false where not allowed. */
function resetPeak(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** Seconds to write `bytes` to `file` in 4 MiB writes and fdatasync it. */
function writeSeconds(file: string, bytes: number): number {
  const block = Buffer.alloc(4 << 20, 0x5a);
  const t0 = process.hrtime.bigint();
  const fd = openSync(file, 'w');
  try {
    for (let done = 0; done < bytes; done += block.length) writeSync(fd, block, 0, Math.min(block.length, bytes - done));
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

try {
  const rssBeforeMb = process.memoryUsage().rss / 2 ** 20;
  const peakReset = resetPeak();
  const cache = new ImageCache(dir, new HttpFetcher({ ...DEFAULT_LIMITS, minBytesPerSecond: 1024 * 1024, slowWindowSeconds: 10 }), base);
  const t0 = process.hrtime.bigint();
  const path = await cache.download(target, { attempts: 1 });
  const downloadS = Number(process.hrtime.bigint() - t0) / 1e9;
  const peakDownloadMb = peakRssMb();
  const t1 = process.hrtime.bigint();
  const hasher = new MultiHasher(['sha256', 'sha512']);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hasher.update(chunk as Buffer);
  const digests = hasher.digestHex();
  const hashS = Number(process.hrtime.bigint() - t1) / 1e9;
  if (digests.sha256 !== target.hashes.sha256) throw new Error('page-cache hash differs');
  rmSync(path);
  const diskWriteMBps = disk === 'disk' ? target.length / 2 ** 20 / writeSeconds(join(dir, 'write-rate'), target.length) : undefined;
  process.stdout.write(JSON.stringify({ rssBeforeMb, peakReset, downloadMBps: target.length / 2 ** 20 / downloadS, hashMBps: target.length / 2 ** 20 / hashS, peakDownloadMb, diskWriteMBps }) + '\n');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
