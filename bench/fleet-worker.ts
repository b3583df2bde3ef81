/**
 * One worker process of bench/fleet.ts: a slice of the fleet as light
 * simulated vehicles (device-sim light-vehicle.ts), each with its own MQTT
 * connection for notifies and the shared keep-alive HTTP of this process.
 *
 * Protocol with the parent (IPC): it receives one `WorkerSetup`; it answers
 * `{ type: 'ready' }` once every vehicle registered, connected and sent its
 * first manifest; then `{ type: 'updated', done: [[deviceId, at], ...] }` in
 * batches as vehicles finish (at = when the director accepted the result
 * manifest, ms since the epoch); on `{ type: 'report', images }` it answers
 * `{ type: 'report', ok, wrong }` (whether each vehicle runs the images) and
 * exits on `{ type: 'exit' }`.
 *
 * Admission: registrations, MQTT connects and cycles each go through a limit
 * of concurrent work (`concurrency`), so a wave of thousands of notifies
 * queues here instead of opening thousands of requests at once. A notify for a
 * vehicle already queued or cycling is remembered and runs one more cycle.
 * A long fallback poll (`pollSeconds`, jittered) covers a lost notify.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { createLightHttp } from '../device-sim/src/light-http.ts';
import { LightVehicle } from '../device-sim/src/light-vehicle.ts';

export interface WorkerSetup {
  type: 'setup';
  deviceIds: string[];
  directorUrl: string;
  imageRepoUrl: string;
  directorRoot: string;
  imageRoot: string;
  provisioningToken: string;
  mqttUrl: string;
  mqttPrefix: string;
  hardwareIds: { primary: string; secondaries: string[] };
  concurrency: number;
  maxSockets: number;
  pollSeconds: number;
}

export interface WorkerReport {
  type: 'report';
  ok: number;
  wrong: string[];
}

class Limiter {
  #active = 0;
  #queue: Array<() => void> = [];
  constructor(readonly limit: number) {}
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#active >= this.limit) await new Promise<void>((r) => this.#queue.push(r));
    this.#active++;
    try {
      return await work();
    } finally {
      this.#active--;
      this.#queue.shift()?.();
    }
  }
}

const send = (m: unknown) => process.send!(m);

async function main(setup: WorkerSetup): Promise<void> {
  const http = createLightHttp({ maxSockets: setup.maxSockets });
  const limiter = new Limiter(setup.concurrency);
  const vehicles = setup.deviceIds.map((deviceId) => new LightVehicle({
    deviceId, directorUrl: setup.directorUrl, imageRepoUrl: setup.imageRepoUrl,
    directorRoot: Buffer.from(setup.directorRoot, 'base64'), imageRoot: Buffer.from(setup.imageRoot, 'base64'),
    hardwareIds: setup.hardwareIds, http,
  }));
  const clients: MqttClient[] = [];
  const updated: Array<[string, number]> = [];
  const state = new Map<string, 'idle' | 'queued' | 'again'>();
  let started = false;

  const cycle = (v: LightVehicle): void => {
    const s = state.get(v.deviceId) ?? 'idle';
    if (s !== 'idle') {
      state.set(v.deviceId, 'again');
      return;
    }
    state.set(v.deviceId, 'queued');
    void limiter.run(async () => {
      for (;;) {
        state.set(v.deviceId, 'queued');
        try {
          const out = await v.cycle();
          if (out.kind === 'updated') updated.push([v.deviceId, out.at]);
        } catch (e) {
          process.stderr.write(`${v.deviceId}: ${(e as Error).name}: ${(e as Error).message}\n`);
          await new Promise((r) => setTimeout(r, 1000));
          state.set(v.deviceId, 'again');
        }
        if (state.get(v.deviceId) !== 'again') break;
      }
      state.set(v.deviceId, 'idle');
    });
  };

  // Set-up work is retried as a device would (registration is idempotent at the director),
  // with fewer requests in flight than cycles: it comes all at once, not in waves.
  const setupLimiter = new Limiter(Math.max(1, Math.ceil(setup.concurrency / 4)));
  const retried = (what: string, v: LightVehicle, work: () => Promise<unknown>) => setupLimiter.run(async () => {
    for (let attempt = 1; ; attempt++) {
      try {
        await work();
        return;
      } catch (e) {
        if (attempt >= 10) throw e;
        process.stderr.write(`${v.deviceId}: ${what} attempt ${attempt}: ${(e as Error).message}\n`);
        await new Promise((r) => setTimeout(r, 1000 * attempt));
      }
    }
  });
  await Promise.all(vehicles.map((v) => retried('register', v, () => v.register(setup.provisioningToken))));
  await Promise.all(vehicles.map((v) => retried('connect', v, () => connect(v))));
  await Promise.all(vehicles.map((v) => retried('first cycle', v, () => v.cycle())));
  started = true;
  send({ type: 'ready' });

  async function connect(v: LightVehicle): Promise<void> {
    const topic = `${setup.mqttPrefix}/devices/${v.deviceId}/notify`;
    const client = mqtt.connect(setup.mqttUrl, {
      clientId: `${setup.mqttPrefix.replace(/\//g, '-')}-${v.deviceId}`, username: v.deviceId, password: v.token(),
      clean: true, reconnectPeriod: 2000, connectTimeout: 30_000, protocolVersion: 5,
    });
    client.on('message', () => started && cycle(v));
    try {
      await new Promise<void>((resolve, reject) => {
        client.once('connect', () => client.subscribe(topic, { qos: 1 }, (err) => (err ? reject(err) : resolve())));
        client.once('error', reject);
        setTimeout(() => reject(new Error('no MQTT connection in 60 s')), 60_000).unref();
      });
    } catch (e) {
      client.end(true);
      throw e;
    }
    clients.push(client);
    // A reconnect re-subscribes (clean session) and runs a cycle: a notify may have gone by.
    client.on('connect', () => client.subscribe(topic, { qos: 1 }, () => started && cycle(v)));
  }

  const flush = setInterval(() => {
    if (updated.length > 0) send({ type: 'updated', done: updated.splice(0) });
  }, 500);
  const poll = setInterval(() => {
    // Each tick polls the vehicles whose slot it is (every pollSeconds-th, visited directly, not
    // by scanning the fleet): all of them once per pollSeconds.
    const slot = Math.floor(Date.now() / 1000) % setup.pollSeconds;
    for (let i = slot; i < vehicles.length; i += setup.pollSeconds) cycle(vehicles[i]!);
  }, 1000);

  process.on('message', (m: { type: string; images?: Record<string, { name: string; sha256: string }> }) => {
    if (m.type === 'report') {
      const wrong: string[] = [];
      for (const v of vehicles) {
        const fine = v.ecus.every((e) => {
          const want = m.images![e.hardwareId];
          return want && e.installed?.filename === want.name && e.installed.hashes.sha256 === want.sha256;
        });
        if (!fine) wrong.push(`${v.deviceId} ${JSON.stringify(v.installed())}`);
      }
      send({ type: 'report', ok: vehicles.length - wrong.length, wrong } satisfies WorkerReport);
    } else if (m.type === 'exit') {
      clearInterval(flush);
      clearInterval(poll);
      for (const c of clients) c.end(true);
      http.close();
      process.exit(0);
    }
  });
}

process.once('message', (m: WorkerSetup) => {
  main(m).catch((e: Error) => {
    process.stderr.write(`fleet worker: ${e.stack ?? e.message}\n`);
    process.exit(1);
  });
});
