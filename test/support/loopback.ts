/**
 * Test servers on loopback: `listenLoopback` puts a server (node:http,
 * node:https or a raw node:net one) on 127.0.0.1 and hands back its port,
 * its `http://` URL and a `close()`; `freePort` finds a port nothing listens on.
 *
 * Invariants:
 * - Only 127.0.0.1, port 0 (the kernel's pick) unless a port is asked for.
 * - The server's own settings (keepAliveTimeout and the like) are left as the
 *   caller set them.
 * - `close()` ends every HTTP connection at once, kept-alive idle ones
 *   included (closeAllConnections), so it never waits for a client's agent to
 *   let go; a raw net server has no such list, so its caller ends its sockets.
 *   It then stops listening. Calling it again returns the same promise.
 */
import http from 'node:http';
import https from 'node:https';
import { createServer, type AddressInfo, type Server } from 'node:net';

export interface Loopback {
  readonly port: number;
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  readonly url: string;
  /** @throws Error when the server was already closed by other means */
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1 (`port`, or any free one) and resolves once the server accepts connections.
 * @throws Error (EADDRINUSE and the like) when it cannot listen
 */
export async function listenLoopback(server: Server, port = 0): Promise<Loopback> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    port: bound,
    url: `http://127.0.0.1:${bound}`,
    close: () =>
      (closing ??= new Promise<void>((resolve, reject) => {
        if (server instanceof http.Server || server instanceof https.Server) server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      })),
  };
}

/** A loopback port nothing listens on now (the kernel's pick, opened and closed again). */
export async function freePort(): Promise<number> {
  const { port, close } = await listenLoopback(createServer());
  await close();
  return port;
}
