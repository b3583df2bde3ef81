/**
 * A raw HTTP/1.1 server on loopback for client tests that need answers node:http would not
 * send (bytes past a Content-Length, a reset instead of an answer, silence). It only splits
 * requests: each complete one (head, then a Content-Length body if any) goes to `answer`,
 * which writes whatever it likes on the socket, or nothing.
 *
 * Invariants:
 * - Requests on a connection reach `answer` in order, each once its body has arrived; none
 *   after `answer` destroyed the socket.
 * - Every request is logged as `METHOD path` before `answer` runs, answered or not.
 * - Accepted sockets are unref'd: only the listening server and the client's sockets keep
 *   the process alive, so a test can check that the client's idle ones do not.
 * - `close()` destroys every connection (a client's kept-alive socket included), then stops listening.
 */
import { createServer, type Socket } from 'node:net';
import { listenLoopback } from './loopback.ts';

export interface RawRequest {
  readonly method: string;
  readonly path: string;
  /** Which connection it came on: 0 for the first the server accepted. */
  readonly connection: number;
  /** Which request it is on that connection: 0 for the first. */
  readonly index: number;
}

export interface RawHttpServer {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  readonly base: string;
  /** `METHOD path` of every request received, in order of arrival. */
  readonly requests: readonly string[];
  /** Connections accepted so far. */
  readonly connections: number;
  /** Connections closed so far, by either side. */
  readonly closed: number;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1 and hands each request to `answer`. */
export async function rawHttpServer(answer: (request: RawRequest, socket: Socket) => void): Promise<RawHttpServer> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  let closed = 0;
  const server = createServer((socket) => {
    const connection = sockets.size;
    sockets.add(socket);
    socket.unref();
    socket.on('error', () => undefined); // a client that resets: the test asserts on the client's side
    socket.on('close', () => closed++);
    let index = 0;
    let pending = Buffer.alloc(0);
    socket.on('data', (data: Buffer) => {
      pending = Buffer.concat([pending, data]);
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0 && !socket.destroyed; end = pending.indexOf('\r\n\r\n')) {
        const head = pending.subarray(0, end).toString('latin1');
        const length = Number(/^content-length:\s*(\d+)/im.exec(head)?.[1] ?? 0);
        if (pending.length < end + 4 + length) return;
        pending = pending.subarray(end + 4 + length);
        const [method = '', path = ''] = head.split('\r\n', 1)[0]!.split(' ');
        requests.push(`${method} ${path}`);
        answer({ method, path, connection, index: index++ }, socket);
      }
    });
  });
  const listening = await listenLoopback(server);
  return {
    base: listening.url,
    requests,
    get connections() {
      return sockets.size;
    },
    get closed() {
      return closed;
    },
    close: () => {
      for (const socket of sockets) socket.destroy();
      return listening.close();
    },
  };
}
