/**
 * bench/agent.ts helper, run as a process of its own session (spawned detached, so
 * setsid): serves generated images on loopback, each `block` repeated, with Range.
 * It stands for the image repository on another machine. Linux schedules CPU time
 * between sessions first (autogroup, on by default), so serving from the bench's own
 * session would bill the server's CPU to the download being measured, which a device
 * never pays; on an idle machine it makes no difference.
 *
 * Arguments: the block file, and a JSON object {path: blocks}. Prints the base URL.
 */
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { listenLoopback } from '../test/support/loopback.ts';

const [blockFile, imagesJson] = process.argv.slice(2) as [string, string];
const block = readFileSync(blockFile);
const images = new Map(Object.entries(JSON.parse(imagesJson) as Record<string, number>));

const server = http.createServer(async (req, res) => {
  const blocks = images.get(new URL(req.url ?? '/', 'http://x').pathname);
  if (blocks === undefined) return void res.writeHead(404).end();
  const total = blocks * block.length;
  const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
  res.writeHead(from > 0 ? 206 : 200, { 'content-length': total - from });
  let offset = from;
  while (offset < total) {
    const chunk = block.subarray(offset % block.length);
    offset += chunk.length;
    if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
  }
  res.end();
});
process.stdout.write(`${(await listenLoopback(server)).url}\n`);
