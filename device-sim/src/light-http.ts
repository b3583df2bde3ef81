/**
 * The HTTP of light simulated vehicles (light-vehicle.ts): core's Fetcher
 * contract (plus headers) over node:http with one keep-alive agent shared by every vehicle
 * of a process, whose `maxSockets` caps the connections that process opens to
 * each server (thousands of vehicles, a few dozen sockets).
 *
 * Errors follow core: a non-2xx answer is an HttpError (a 404 root ends a
 * root chain), a body past the cap a LengthLimitError, anything of the
 * transport a DownloadError naming the URL. A request that gets no answer in
 * `timeoutMs` is a DownloadError too.
 */
import http from 'node:http';
import { DownloadError, HttpError, LengthLimitError } from '@upfleet/core';
import type { LightHttp } from './light-vehicle.ts';

export interface LightHttpOptions {
  /** Sockets per server (default 32). */
  maxSockets?: number;
  /** Whole-request deadline in ms (default 60 s). */
  timeoutMs?: number;
}

export function createLightHttp(o: LightHttpOptions = {}): LightHttp & { close(): void } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.maxSockets ?? 32 });
  const timeoutMs = o.timeoutMs ?? 60_000;

  const request = (method: string, url: string, body: string | undefined, headers: Record<string, string>, maxLength: number) =>
    new Promise<{ status: number; bytes: Buffer }>((resolve, reject) => {
      const req = http.request(url, { method, agent, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
        const parts: Buffer[] = [];
        let received = 0;
        res.on('data', (chunk: Buffer) => {
          received += chunk.byteLength;
          if (received > maxLength) {
            res.destroy();
            reject(new LengthLimitError(url, maxLength, received));
            return;
          }
          parts.push(chunk);
        });
        res.once('end', () => resolve({ status: res.statusCode ?? 0, bytes: Buffer.concat(parts) }));
        res.once('error', (e) => reject(new DownloadError(`${method} ${url}: ${e.message}`, { cause: e })));
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
      req.once('error', (e) => reject(new DownloadError(`${method} ${url}: ${e.message}`, { cause: e })));
      req.end(body);
    });

  return {
    async get(url, maxLength, headers = {}) {
      const r = await request('GET', url, undefined, headers, maxLength);
      if (r.status < 200 || r.status > 299) throw new HttpError(url, r.status);
      return new Uint8Array(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength);
    },
    async post(url, body, headers) {
      const r = await request('POST', url, body, headers, 1 << 20);
      return { status: r.status, text: r.bytes.toString('utf8') };
    },
    close: () => agent.destroy(),
  };
}
