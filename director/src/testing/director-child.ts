/**
 * `upfleet-director serve` as a child process (tests, benchmarks): resolves once
 * it logs `director cluster started` (with --processes above 1) or `director
 * started`, with its URL and the pid of each worker; rejects if it exits first.
 * Keeps the worker pids current (a worker the primary replaces logs `director
 * started` again) and every log line, for assertions.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const DIRECTOR_BIN = fileURLToPath(new URL('../../bin/upfleet-director', import.meta.url));

export interface DirectorChild {
  process: ChildProcess;
  url: string;
  /** Worker index -> pid of the worker running now. */
  workers: Map<number, number>;
  lines: Array<Record<string, unknown>>;
  /** Resolves when a log line matches (lines already seen count). */
  waitForLog(match: (entry: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGTERM, and resolves once the process (and its workers) exited. */
  stop(): Promise<void>;
}

export function startDirectorChild(args: string[], env: Record<string, string>, startTimeoutMs = 120_000): Promise<DirectorChild> {
  const processes = Number(args[args.indexOf('--processes') + 1] ?? 1) || 1;
  const child = spawn(process.execPath, [DIRECTOR_BIN, 'serve', ...args], {
    env: { ...process.env, UPFLEET_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: DirectorChild['lines'] = [];
  const stderr: string[] = [];
  const workers = new Map<number, number>();
  const waiters = new Set<() => void>();
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line);
    } catch {
      entry = { msg: line };
    }
    lines.push(entry);
    if (entry.msg === 'director started' && typeof entry.pid === 'number') workers.set(typeof entry.worker === 'number' ? entry.worker : 0, entry.pid);
    for (const w of [...waiters]) w();
  });
  const waitForLog: DirectorChild['waitForLog'] = (match, timeoutMs = 60_000) => new Promise((resolve, reject) => {
    const check = () => {
      const found = lines.find(match);
      if (!found) return;
      waiters.delete(check);
      clearTimeout(timer);
      resolve(found);
    };
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`no such director log line within ${timeoutMs} ms; stderr: ${stderr.join('\n')}`));
    }, timeoutMs);
    waiters.add(check);
    check();
  });
  const ready = processes > 1 ? 'director cluster started' : 'director started';
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`upfleet-director serve exited with ${code}: ${stderr.join('\n')}`));
    child.once('exit', onExit);
    waitForLog((e) => e.msg === ready, startTimeoutMs).then((entry) => {
      child.off('exit', onExit);
      resolve({
        process: child, url: entry.url as string, workers, lines, waitForLog,
        async stop() {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        },
      });
    }, (error) => {
      child.kill('SIGKILL');
      reject(error);
    });
  });
}
