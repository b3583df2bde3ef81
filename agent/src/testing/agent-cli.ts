/**
 * The agent CLI (`agent/bin/upfleet-agent`) as a child process, for tests that run
 * the real executable: its exit and everything it printed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const AGENT_BIN = fileURLToPath(new URL('../../bin/upfleet-agent', import.meta.url));

export interface CliExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts the CLI with `args`. `env` is laid over this process's environment
 * (UPFLEET_LOG_LEVEL defaults to warn); an undefined value removes a variable.
 */
export function startAgentCli(args: string[], env: Record<string, string | undefined> = {}): { child: ChildProcess; exit: Promise<CliExit> } {
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, UPFLEET_LOG_LEVEL: 'warn', ...env })) if (v !== undefined) merged[k] = v;
  const child = spawn(process.execPath, [AGENT_BIN, ...args], { env: merged, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return { child, exit: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }))) };
}

/** Runs the CLI to its end (see startAgentCli). */
export function runAgentCli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliExit> {
  return startAgentCli(args, env).exit;
}
