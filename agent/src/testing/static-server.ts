/**
 * Test support: a loopback HTTP server for a repository's files (path ->
 * bytes), with Range support, an override map for tampering, paths whose
 * answer stalls, and a request log.
 * Real HTTP, listening on 127.0.0.1 port 0.
 */
import http from 'node:http';
import { listenLoopback } from '../../../test/support/loopback.ts';

export interface StaticServer {
  url: string;
  /** URL path (no leading slash, under the prefix) -> bytes served instead of the real file. */
  overrides: Map<string, Uint8Array>;
  /** URL paths (as in `overrides`) answered with their head and half their body, then nothing: a transfer in flight. */
  stalls: Set<string>;
  requests: Array<{ path: string; range?: string }>;
  close(): Promise<void>;
}

export async function serveFiles(files: () => ReadonlyMap<string, Uint8Array>, prefix = ''): Promise<StaticServer> {
  const overrides = new Map<string, Uint8Array>();
  const stalls = new Set<string>();
  const requests: StaticServer['requests'] = [];
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\//, '');
    requests.push({ path, ...(req.headers.range && { range: req.headers.range }) });
    if (!path.startsWith(prefix)) return void res.writeHead(404).end();
    const rel = path.slice(prefix.length);
    const body = overrides.get(rel) ?? files().get(rel);
    if (!body) return void res.writeHead(404).end();
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const from = m && Number(m[1]) < body.byteLength ? Number(m[1]) : undefined;
    if (from === undefined) res.writeHead(200, { 'content-length': body.byteLength });
    else res.writeHead(206, { 'content-length': body.byteLength - from, 'content-range': `bytes ${from}-${body.byteLength - 1}/${body.byteLength}` });
    const rest = body.subarray(from ?? 0);
    if (stalls.has(rel)) res.write(rest.subarray(0, rest.byteLength >> 1));
    else res.end(rest);
  });
  const { url, close } = await listenLoopback(server);
  return { url, overrides, stalls, requests, close };
}
