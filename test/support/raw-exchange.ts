/** Raw TCP on loopback, for tests that must see exactly what a client on one HTTP connection sees. */
import { connect } from 'node:net';

/** Writes `head` and `body` then `next` on one connection; resolves with all it read and whether the server closed it. */
export function exchange(url: string, head: string, body: Buffer, next: string, waitMs = 3000): Promise<{ text: string; closed: boolean }> {
  const { port, hostname } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    let text = '';
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closed });
    };
    const timer = setTimeout(() => done(false), waitMs);
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => undefined); // EPIPE/ECONNRESET while still writing the body: the server closed it
    socket.on('close', () => done(true));
    socket.write(head);
    socket.write(body);
    socket.write(next);
  });
}
