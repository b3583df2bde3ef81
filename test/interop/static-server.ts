/**
 * A tiny static HTTP server on loopback for a RepositoryBuilder's file set
 * (path -> bytes): GET /<path> with the path percent-decoded, 404 otherwise.
 * `files` is read on every request, so a test can publish new versions.
 * Counts requests per path, so a test can assert what a client fetched.
 */
import http from 'node:http';
import { listenLoopback } from '../support/loopback.ts';

export interface StaticServer {
  /** `http://127.0.0.1:<port>/` */
  readonly url: string;
  files: Map<string, Uint8Array>;
  readonly requests: string[];
  close(): Promise<void>;
}

export async function serveFiles(files: Map<string, Uint8Array>): Promise<StaticServer> {
  const state = { files, requests: [] as string[] };
  const server = http.createServer((req, res) => {
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\//, '');
    } catch {
      res.writeHead(400).end();
      return;
    }
    state.requests.push(path);
    const body = state.files.get(path);
    if (req.method !== 'GET' || !body) {
      res.writeHead(404, { 'content-length': 0 }).end();
      return;
    }
    res.writeHead(200, { 'content-length': body.byteLength, 'content-type': 'application/octet-stream' });
    res.end(body);
  });
  // As the image repository's server: idle sockets live 65 s. A server that announces
  // `Keep-Alive: timeout=1` gets no reuse at all from Node's agent (it keeps a socket only
  // a second less than the announced timeout), so every request would open a connection.
  // close() ends open connections itself.
  server.keepAliveTimeout = 65_000;
  const { url, close } = await listenLoopback(server);
  return {
    url: `${url}/`,
    get files() {
      return state.files;
    },
    set files(f) {
      state.files = f;
    },
    requests: state.requests,
    close,
  };
}
