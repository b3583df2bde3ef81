/**
 * `serve --processes N`: N director processes on one database, one HTTP port.
 * Node's cluster module: the primary (this process) forks N workers running the
 * same command line; each worker's server.listen shares the primary's one
 * listening socket, and the primary deals accepted connections out to the
 * workers in turn. No second daemon and no load-balancer configuration to keep
 * in step (HAProxy would be both), and a worker's death costs only its own
 * connections. Invariants:
 * - The primary migrates the database before forking, so workers never race to.
 * - Worker i keeps index i for its life and its replacements' (UPFLEET_DIRECTOR_WORKER),
 *   hence its MQTT client ID: a worker that dies is forked again with the same
 *   ID, resumes its persistent session, and the broker delivers again the
 *   messages it had not acknowledged (nothing it had not committed).
 * - The primary serves nothing itself: it forks, replaces dead workers (at most
 *   RESPAWN_LIMIT within a minute), and stops them all on SIGTERM/SIGINT.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';

export const WORKER_ENV = 'UPFLEET_DIRECTOR_WORKER';
const RESPAWN_LIMIT = 10;

/** Tells the primary this worker's director is up. */
export function reportStarted(url: string): void {
  process.send?.({ directorStarted: url });
}

/** This process's worker index when it is a cluster worker, else undefined. */
export function workerIndex(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const i = Number(process.env[WORKER_ENV]);
  return Number.isInteger(i) && i >= 0 ? i : undefined;
}

export interface ClusterOptions {
  processes: number;
  log: Logger;
  /** Runs once in the primary before any worker starts (schema migrations). */
  prepare(): Promise<void>;
}

export interface RunningCluster {
  url: string;
  /** Stops every worker and resolves once all have exited. */
  close(): Promise<void>;
}

/** Forks the workers and resolves once every one listens. @throws Error when a worker exits before it listens */
export async function startCluster(o: ClusterOptions): Promise<RunningCluster> {
  await o.prepare();
  const workers = new Map<number, Worker>();
  const respawns: number[] = [];
  let stopping = false;

  const fork = (index: number): Worker => {
    const worker = cluster.fork({ [WORKER_ENV]: String(index) });
    workers.set(index, worker);
    worker.on('exit', (code, signal) => {
      if (workers.get(index) !== worker) return;
      workers.delete(index);
      if (stopping) return;
      const now = Date.now();
      respawns.push(now);
      while (respawns[0]! < now - 60_000) respawns.shift();
      if (respawns.length > RESPAWN_LIMIT) {
        o.log.error({ worker: index, code, signal }, 'director worker exited; too many restarts in a minute, not restarting');
        return;
      }
      o.log.warn({ worker: index, pid: worker.process.pid, code, signal }, 'director worker exited; starting another in its place');
      fork(index);
    });
    return worker;
  };

  const listening = Array.from({ length: o.processes }, (_, i) => new Promise<string>((resolve, reject) => {
    const worker = fork(i);
    const onExit = (code: number) => reject(new Error(`director worker ${i} exited with code ${code} before it listened`));
    worker.once('exit', onExit);
    // Sent by the worker once its director is up (HTTP, store and MQTT), not merely listening.
    worker.on('message', (m: { directorStarted?: string }) => {
      if (typeof m?.directorStarted !== 'string') return;
      worker.off('exit', onExit);
      resolve(m.directorStarted);
    });
  }));
  const close = async () => {
    stopping = true;
    const exits = [...workers.values()].map((w) => new Promise<void>((r) => (w.isDead() ? r() : w.once('exit', () => r()))));
    for (const w of workers.values()) w.process.kill('SIGTERM');
    await Promise.all(exits);
  };
  let urls: string[];
  try {
    urls = await Promise.all(listening);
  } catch (error) {
    await close();
    throw error;
  }
  const url = urls[0]!;
  o.log.info({ url, processes: o.processes, workers: [...workers.entries()].map(([i, w]) => ({ worker: i, pid: w.process.pid })) }, 'director cluster started');
  return { url, close };
}
