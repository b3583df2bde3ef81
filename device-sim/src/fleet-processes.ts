/**
 * The fleet simulator spread over child processes: `startFleetProcesses`
 * forks `processes` children (this file is also their entry point), each
 * running `startFleet` over its share of the vehicles, numbered on from the
 * previous share, so device IDs are the same as in one process.
 *
 * Why: one Node process runs on one core. With the whole fleet in the demo's
 * process, the director and the image repository waited behind every simulated
 * vehicle's verification and every simulated ECU's flash on one event loop,
 * and their answers came too late for the agents' deadlines; in children they
 * keep their own event loop and the fleet uses the other cores.
 *
 * Protocol (IPC, advanced serialisation): parent -> child `start` (FleetOptions),
 * `done` (timeoutMs), `close`; child -> parent `started`, `failed` (message),
 * `done` (the result). A child whose parent goes away closes its fleet and exits.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Fleet, FleetOptions } from './fleet.ts';

type DoneResult = Awaited<ReturnType<Fleet['done']>>;

export interface FleetProcesses {
  done(timeoutMs?: number): Promise<DoneResult>;
  close(): Promise<void>;
}

type ChildMessage = { type: 'started' } | { type: 'failed'; message: string } | { type: 'done'; result: DoneResult };

function next(child: ChildProcess, type: ChildMessage['type'] | 'failed'): Promise<ChildMessage> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: ChildMessage) => {
      if (m.type !== type && m.type !== 'failed') return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (m.type === 'failed') reject(new Error(m.message));
      else resolve(m);
    };
    const onExit = (code: number | null) => reject(new Error(`fleet process exited with ${code}`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Starts the fleet in `processes` children. @throws Error with the first child's failure (every child is then stopped) */
export async function startFleetProcesses(o: Omit<FleetOptions, 'logger'> & { processes: number }): Promise<FleetProcesses> {
  const { processes, ...options } = o;
  const children: ChildProcess[] = [];
  const close = async () => {
    await Promise.all(children.map((c) => {
      if (c.exitCode !== null || c.signalCode !== null) return undefined;
      const exited = new Promise((r) => c.once('exit', r));
      c.send({ type: 'close' }, () => undefined);
      const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
      return exited.then(() => clearTimeout(timer));
    }));
  };
  let first = options.firstNumber ?? 1;
  try {
    const started = [];
    for (let k = 0; k < processes; k++) {
      const devices = Math.floor(options.devices / processes) + (k < options.devices % processes ? 1 : 0);
      if (devices === 0) continue;
      const child = fork(fileURLToPath(import.meta.url), [], { execArgv: process.execArgv, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(child);
      child.send({ type: 'start', options: { ...options, devices, firstNumber: first, dir: options.dir } });
      started.push(next(child, 'started'));
      first += devices;
    }
    await Promise.all(started);
  } catch (e) {
    await close();
    throw e;
  }
  return {
    async done(timeoutMs) {
      const results = await Promise.all(children.map((c) => {
        const reply = next(c, 'done');
        c.send({ type: 'done', timeoutMs });
        return reply.then((m) => (m as { result: DoneResult }).result);
      }));
      return { ok: results.reduce((n, r) => n + r.ok, 0), failed: results.flatMap((r) => r.failed) };
    },
    close,
  };
}

// ------------------------------------------------------------------ child

if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  let fleet: Fleet | undefined;
  const send = (m: ChildMessage) => process.send!(m);
  process.on('disconnect', () => void fleet?.close().finally(() => process.exit(0)));
  process.on('message', (m: { type: 'start'; options: FleetOptions } | { type: 'done'; timeoutMs?: number } | { type: 'close' }) => {
    if (m.type === 'start') {
      void import('./fleet.ts')
        .then(({ startFleet }) => startFleet(m.options))
        .then((f) => {
          fleet = f;
          send({ type: 'started' });
        })
        .catch((e: Error) => send({ type: 'failed', message: `${e.name}: ${e.message}` }));
    } else if (m.type === 'done') {
      void fleet!.done(m.timeoutMs).then((result) => send({ type: 'done', result }));
    } else {
      void (fleet?.close() ?? Promise.resolve()).finally(() => process.exit(0));
    }
  });
}
