/**
 * A pair of connected pseudo-terminals made by socat, for serial tests and demos
 * on machines without serial hardware. Both ends are raw (no echo, no line
 * discipline). ptys ignore the baud rate: pacing is the link emulator's job.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UpfleetError } from '@upfleet/core';

export class PtyError extends UpfleetError {
  override name = 'PtyError';
  override readonly code = 'PTY';
}

export interface PtyPair {
  /** Symlinks to the two pty devices. */
  readonly a: string;
  readonly b: string;
  /** Stops socat and removes the links. */
  close(): Promise<void>;
}

/**
 * Spawns `socat pty,raw,echo=0,link=A pty,raw,echo=0,link=B` and resolves once both
 * links exist.
 * @throws PtyError when socat is missing or does not come up within `timeoutMs`.
 */
export async function createPtyPair(options: { dir?: string; timeoutMs?: number } = {}): Promise<PtyPair> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'upfleet-pty-'));
  const a = join(dir, 'tty-a');
  const b = join(dir, 'tty-b');
  const child: ChildProcess = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + (options.timeoutMs ?? 5000);
  for (;;) {
    // socat prints "starting data transfer loop" once both ptys are open.
    if (existsSync(a) && existsSync(b) && stderr.includes('starting data transfer loop')) return { a, b, close };
    const failed = await Promise.race([
      spawnError.then((e) => `cannot run socat: ${e.message}`),
      exited.then((code) => `socat exited with ${code}: ${stderr.trim().split('\n').pop()}`),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 20)),
    ]);
    if (failed || Date.now() > deadline) {
      await close();
      throw new PtyError(failed ?? `socat did not create ${a} and ${b} in time`);
    }
  }
}
