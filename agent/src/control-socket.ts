/**
 * One agent per device. The daemon (`upfleet-agent run`) holds
 * `<storageDir>/agent.sock`, a Unix socket only its owner may use (0600), for
 * as long as it runs: that socket is its lock and its door. `status` and
 * `check --once` ask the daemon through it instead of opening the serial ports
 * the daemon holds; with no daemon they work alone.
 *
 * Protocol: the client sends one JSON line, `{"cmd":"status"}` or
 * `{"cmd":"check"}`; the daemon answers one JSON line, exactly what the command
 * prints with --json (the status, the cycle outcome, or `{"error":{name, code,
 * message, field?}}`), and closes the connection.
 *
 * Invariants:
 * - A socket file that accepts a connection means a daemon runs: a second one
 *   refuses to start (AgentRunningError). A file nobody listens on (a killed
 *   daemon's) fails to connect and is replaced.
 * - The check-and-replace runs under SQLite's write lock on the agent's
 *   database, which the OS releases when a process dies (flock semantics), so
 *   two daemons starting together cannot both take a stale socket over.
 * - The socket is created with umask 0177: it is never reachable by others,
 *   not even between bind and chmod.
 */
import { chmodSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Db } from './db.ts';
import { AgentRunningError, ControlSocketError, DaemonError } from './errors.ts';

export const CONTROL_SOCKET = 'agent.sock';

export type ControlCommand = 'status' | 'check';

export interface ControlHandlers {
  status(): Promise<unknown>;
  check(): Promise<unknown>;
}

/** The error object the CLI prints with --json, and the daemon answers. */
export interface ErrorAnswer {
  error: { name: string; code: string | null; message: string; field?: string };
}

/** How an error travels: class name, code, message and the config field it names. */
export function errorAnswer(e: unknown): ErrorAnswer {
  const err = e instanceof Error ? e : new Error(String(e));
  const field = (err as { field?: unknown }).field;
  const code = (err as { code?: unknown }).code;
  return { error: { name: err.name, code: typeof code === 'string' ? code : null, message: err.message, ...(typeof field === 'string' && { field }) } };
}

export function controlSocketPath(storageDir: string): string {
  return join(storageDir, CONTROL_SOCKET);
}

/** A request line longer than this is not one of ours. */
const MAX_REQUEST = 4096;
/** Answers are a status or a cycle outcome: far below this. */
const MAX_ANSWER = 16 << 20;
const REQUEST_TIMEOUT_MS = 10_000;
/** sun_path holds 108 bytes on Linux, the terminating NUL included. */
const MAX_SOCKET_PATH = 107;
const fitsSocket = (path: string) => Buffer.byteLength(path) <= MAX_SOCKET_PATH;

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/**
 * Takes the device's control socket for this daemon and serves `handlers` on it.
 * @throws AgentRunningError when another daemon answers on it; ControlSocketError when it cannot be bound.
 */
export async function listenControl(options: { path: string; db: Db; handlers: ControlHandlers }): Promise<ControlServer> {
  const { path, db, handlers } = options;
  if (!fitsSocket(path)) throw new ControlSocketError(path, `longer than the ${MAX_SOCKET_PATH} bytes a Unix socket path may have: choose a shorter storageDir`);
  const server = createServer((socket) => serve(socket, handlers));
  db.exec('BEGIN IMMEDIATE');
  try {
    try {
      await listen(server, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw new ControlSocketError(path, (e as Error).message, { cause: e });
      if (await answers(path)) throw new AgentRunningError(path);
      // A daemon that was killed left its socket file behind.
      try {
        unlinkSync(path);
        await listen(server, path);
      } catch (e2) {
        throw new ControlSocketError(path, `cannot replace the stale socket: ${(e2 as Error).message}`, { cause: e2 });
      }
    }
    chmodSync(path, 0o600);
  } finally {
    db.exec('COMMIT');
  }
  return {
    path,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => {
      server.off('listening', onListening);
      reject(e);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    // The bind happens inside listen(), synchronously: the socket is born 0600.
    const umask = process.umask(0o177);
    try {
      server.listen(path);
    } finally {
      process.umask(umask);
    }
  });
}

/** Whether something accepts connections on `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function serve(socket: Socket, handlers: ControlHandlers): void {
  let buffered = '';
  socket.setEncoding('utf8');
  socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  const onData = (chunk: string) => {
    buffered += chunk;
    const end = buffered.indexOf('\n');
    if (end < 0) {
      if (buffered.length > MAX_REQUEST) socket.destroy();
      return;
    }
    socket.off('data', onData);
    socket.setTimeout(0);
    void answer(buffered.slice(0, end), handlers).then((line) => socket.end(line + '\n'));
  };
  socket.on('data', onData);
}

async function answer(line: string, handlers: ControlHandlers): Promise<string> {
  let cmd: unknown;
  try {
    cmd = (JSON.parse(line) as { cmd?: unknown } | null)?.cmd;
  } catch {
    cmd = undefined;
  }
  try {
    if (cmd === 'status') return JSON.stringify(await handlers.status());
    if (cmd === 'check') return JSON.stringify(await handlers.check());
    return JSON.stringify({ error: { name: 'UsageError', code: 'USAGE', message: `unknown control request ${JSON.stringify(line.slice(0, 100))}: expected {"cmd":"status"} or {"cmd":"check"}` } } satisfies ErrorAnswer);
  } catch (e) {
    return JSON.stringify(errorAnswer(e));
  }
}

/**
 * Asks the daemon listening on `path`. Returns undefined when no daemon runs
 * (no socket file, or a stale one nobody listens on): the caller works alone.
 * @throws DaemonError carrying the daemon's error; ControlSocketError when the
 *   socket cannot be used or the answer is not one.
 */
export function askDaemon(path: string, cmd: ControlCommand): Promise<unknown | undefined> {
  // No daemon can listen on a path too long for a socket.
  if (!fitsSocket(path)) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let connected = false;
    let received = '';
    socket.setEncoding('utf8');
    socket.once('connect', () => {
      connected = true;
      socket.write(JSON.stringify({ cmd }) + '\n');
    });
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (received.length > MAX_ANSWER) socket.destroy(new ControlSocketError(path, `answer larger than ${MAX_ANSWER} bytes`));
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      if (!connected && (e.code === 'ENOENT' || e.code === 'ECONNREFUSED')) return resolve(undefined);
      reject(e instanceof ControlSocketError ? e : new ControlSocketError(path, e.message, { cause: e }));
    });
    socket.once('end', () => {
      const line = received.split('\n')[0] ?? '';
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        return reject(new ControlSocketError(path, line ? `not a JSON answer: ${line.slice(0, 100)}` : 'the daemon closed the connection without an answer'));
      }
      const error = (parsed as Partial<ErrorAnswer> | null)?.error;
      if (error && typeof error === 'object') return reject(new DaemonError(error));
      resolve(parsed);
    });
  });
}
