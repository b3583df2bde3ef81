/**
 * `upfleet-repo serve` as a child process, for tests: resolves once it logs
 * `listening` (with its URL), rejects if it exits first. `env` is laid over
 * this process's environment; a variable set to undefined is removed, so a
 * test can prove what the server does without it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/upfleet-repo', import.meta.url));

export interface ServeChild {
  process: ChildProcess;
  url: string;
  stderrLines: string[];
  waitForStderr(pattern: RegExp): Promise<void>;
}

export function childEnv(env: Record<string, string | undefined>): Record<string, string> {
  const merged: Record<string, string | undefined> = { ...process.env, ...env };
  return Object.fromEntries(Object.entries(merged).filter((e): e is [string, string] => e[1] !== undefined));
}

export function startServe(args: string[], env: Record<string, string | undefined>): Promise<ServeChild> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--log-level', 'info', ...args], {
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderrLines: string[] = [];
  const waiters: Array<{ pattern: RegExp; resolve: () => void }> = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderrLines.push(line);
    for (const w of waiters) if (w.pattern.test(line)) w.resolve();
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${stderrLines.join('\n')}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as { msg?: string; url?: string };
      if (entry.msg === 'listening') {
        resolve({
          process: child,
          url: entry.url!,
          stderrLines,
          waitForStderr: (pattern) =>
            stderrLines.some((l) => pattern.test(l)) ? Promise.resolve() : new Promise((r) => waiters.push({ pattern, resolve: r })),
        });
      }
    });
  });
}

export async function killServe(child: ServeChild, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (child.process.exitCode !== null || child.process.signalCode !== null) return;
  const exited = new Promise((r) => child.process.once('exit', r));
  child.process.kill(signal);
  await exited;
}
