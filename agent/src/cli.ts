/**
 * `upfleet-agent`: provision | run | check --once | status.
 * Exit codes: 0 success (or nothing to do), 1 a failure (one line, typed), 2 bad usage,
 * 3 another daemon runs for this device (AgentRunningError from a second `run`).
 * `status` and `check` ask a running daemon over its control socket
 * (control-socket.ts), so they never open the serial ports it holds.
 */
import { parseArgs } from 'node:util';
import pino from 'pino';
import { UpfleetError } from '@upfleet/core';
import { createAgent, type Agent, type AgentStatus, type CycleOutcome } from './agent.ts';
import { askDaemon, controlSocketPath, errorAnswer } from './control-socket.ts';
import { AgentRunningError } from './errors.ts';
import { flagName, loadConfig, OVERRIDABLE_FIELDS, type AgentConfig } from './config.ts';
import { ProgressBars } from './progress-bars.ts';
import packageJson from '../package.json' with { type: 'json' };

const HELP = `Usage: upfleet-agent <command> [options]

Commands:
  provision        create the primary key, pin both repositories' roots, register with the director
  run              the daemon: a cycle on each MQTT notify and every poll interval
  check --once     run one update cycle and exit (0: done or nothing to do; 1: failed, with the reason)
  status           installed image per ECU, pending work, outbox, last result

status and check ask the running daemon (its socket <storageDir>/agent.sock) when there is
one, and work alone when there is none. One daemon per device: a second run exits with 3.

Options:
  --config FILE    JSON config (default: $UPFLEET_CONFIG or /etc/upfleet/agent.json)
  --json           machine-readable output (check, status, provision)
  --once           with check: one cycle (the only mode)
  -h, --help       this help
  -V, --version    print the version
${OVERRIDABLE_FIELDS.map((f) => `  --${flagName(f)} VALUE`.padEnd(35) + `overrides "${f}" (env UPFLEET_${f.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase()})`).join('\n')}

Exit codes: 0 done, 1 failed (the typed error on stderr), 2 bad usage, 3 a daemon already runs.

Key passphrase: $UPFLEET_KEY_PASSPHRASE, else the file named by "keyPassphraseFile",
else $CREDENTIALS_DIRECTORY/upfleet-key-passphrase (systemd LoadCredential=).
`;

class UsageProblem extends Error {}

function parse(argv: string[]) {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    config: { type: 'string' },
    json: { type: 'boolean' },
    once: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'V' },
  };
  for (const f of OVERRIDABLE_FIELDS) options[flagName(f)] = { type: 'string' };
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageProblem((e as Error).message);
  }
}

async function main(): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`upfleet-agent: ${(e as Error).message}\n${HELP}`);
    return 2;
  }
  const values = args.values as Record<string, string | boolean | undefined>;
  const [command, ...rest] = args.positionals;
  if (values.help || command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`upfleet-agent ${packageJson.version}\n`);
    return 0;
  }
  if (!command || !['provision', 'run', 'check', 'status'].includes(command) || rest.length > 0) {
    process.stderr.write(`upfleet-agent: ${command ? `unknown command "${[command, ...rest].join(' ')}"` : 'a command is required'}\n${HELP}`);
    return 2;
  }
  const overrides: Partial<Record<(typeof OVERRIDABLE_FIELDS)[number], string>> = {};
  for (const f of OVERRIDABLE_FIELDS) {
    const v = values[flagName(f)];
    if (typeof v === 'string') overrides[f] = v;
  }
  const file = (values.config as string | undefined) ?? process.env.UPFLEET_CONFIG ?? '/etc/upfleet/agent.json';
  const json = values.json === true;
  const tty = process.stderr.isTTY === true && !json;
  let agent: Agent | undefined;
  try {
    const config: AgentConfig = loadConfig({ file, env: process.env, overrides });
    const logger = pino({ name: 'upfleet-agent', level: process.env.UPFLEET_LOG_LEVEL ?? (tty && command !== 'run' ? 'warn' : 'info') }, pino.destination(2));
    const bars = tty ? new ProgressBars(process.stderr) : undefined;
    const open = async (): Promise<Agent> =>
      (agent = await createAgent(config, { logger, ...(bars && { onProgress: (p) => bars.update(p) }), httpOnly: command !== 'run' }));
    // With a daemon running, it answers: it holds the serial ports.
    const viaDaemon = command === 'status' || command === 'check' ? await askDaemon(controlSocketPath(config.storageDir), command) : undefined;
    switch (command) {
      case 'provision': {
        const r = await (await open()).provision();
        process.stdout.write(json ? JSON.stringify(r) + '\n' : `provisioned ${config.deviceId}: ${r.status}, primary key ${r.keyid} (${r.key === 'reused' ? 'existing key reused' : 'new key'})\n`);
        return 0;
      }
      case 'status': {
        const s = (viaDaemon as AgentStatus | undefined) ?? (await (await open()).status());
        process.stdout.write(json ? JSON.stringify(s) + '\n' : formatStatus(s));
        return 0;
      }
      case 'check': {
        const out = (viaDaemon as CycleOutcome | undefined) ?? (await (await open()).checkOnce());
        bars?.finish();
        if (json) process.stdout.write(JSON.stringify(out) + '\n');
        if (out.result === 'failure' || out.result === 'aborted') {
          process.stderr.write(`upfleet-agent: cycle ${out.result}: ${out.failure?.name ?? 'Error'}: ${out.failure?.message ?? 'unknown'}\n`);
          return 1;
        }
        if (out.undelivered > 0) {
          const why = out.deliveryError ? ` (${out.deliveryError.name}: ${out.deliveryError.message})` : '';
          process.stderr.write(`upfleet-agent: ${out.undelivered} report(s) not delivered yet; kept in the outbox${why}\n`);
          return 1;
        }
        if (!json) process.stdout.write(out.result === 'noUpdate' ? 'nothing to do\n' : 'update installed\n');
        return 0;
      }
      case 'run': {
        const running = await open();
        // The first SIGTERM or SIGINT lets the cycle in flight finish; a second cuts it short,
        // leaving what a power loss there would (the next start resumes it).
        let signals = 0;
        const stop = () => {
          if (++signals === 1) process.stderr.write('upfleet-agent: stopping after the cycle in flight, if any (signal again to stop now)\n');
          void running.close({ abandonCycle: signals > 1 });
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
        await running.run();
        return 0;
      }
    }
    return 2;
  } catch (e) {
    const err = e as Error;
    const field = (err as { field?: string }).field;
    // --json callers parse stdout: they get the failure there too, as one object.
    if (json) process.stdout.write(JSON.stringify(errorAnswer(err)) + '\n');
    process.stderr.write(`upfleet-agent: ${err instanceof UpfleetError ? `${err.name}: ` : ''}${err.message}${field && !err.message.includes(field) ? ` (${field})` : ''}\n`);
    if (command === 'run') await agent?.close().catch(() => undefined);
    return err instanceof AgentRunningError ? 3 : 1;
  } finally {
    if (command !== 'run') await agent?.close().catch(() => undefined);
  }
}

function formatStatus(s: Awaited<ReturnType<Agent['status']>>): string {
  const lines = [`device ${s.deviceId} (${s.provisioned ? 'provisioned' : 'NOT provisioned'}), state ${s.state}`];
  for (const e of s.ecus) {
    const img = e.installed && e.installed.filename ? `${e.installed.filename} (${e.installed.length} bytes, release ${e.releaseCounter})` : 'no image';
    lines.push(`  ${e.role.padEnd(9)} ${e.serial.padEnd(14)} ${e.hardwareId.padEnd(12)} ${e.error ? `unreachable: ${e.error}` : img}`);
  }
  if (s.pending) lines.push(`pending: ${s.pending.plan.map((p) => `${p.name} -> ${p.ecuSerial}`).join(', ') || '(checking)'}`);
  lines.push(`outbox: ${s.outbox.manifest} manifest(s), ${s.outbox.progress} progress event(s) waiting, ${s.outbox.rejected} rejected`);
  if (s.lastResult) lines.push(`last result: ${s.lastResult.result.success ? 'success' : `failed (${s.lastResult.result.code})`} for director targets v${s.lastResult.result.directorTargetsVersion}: ${s.lastResult.result.description}`);
  if (s.lastCycle) lines.push(`last cycle: ${s.lastCycle.at} ${s.lastCycle.result}`);
  return lines.join('\n') + '\n';
}

process.exitCode = await main();
