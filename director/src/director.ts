/**
 * Starting and stopping a director: keys from DIR, the store (SQLite at
 * DIR/director.db by default, or the `database` given: a SQLite file or a
 * postgres:// URL, migrated at start), the image repository client, the HTTP
 * server, and MQTT (the embedded broker, an external broker, or none).
 * Everything durable is in DIR and the database, so a director restarted on
 * them continues where it stopped.
 */
import { createServer, type Server } from 'node:http';
import { join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { checkSignersMatchRoot, initKeys, loadOnlineSigners, loadRoots, onlinePassphraseFor, type InitOptions, type InitResult } from './key-store.ts';
import { defaultDatabase, describeDatabase, openStore } from './open-store.ts';
import { DirectorServices } from './services.ts';
import { DEFAULT_EXPIRIES, type Expiries } from './device-repo.ts';
import { ImageRepoClient } from './image-repo-client.ts';
import type { ImageRepository } from './context.ts';
import { Router } from './http/router.ts';
import { addRoutes } from './http/api.ts';
import { AdminAccess } from './http/admin-access.ts';
import { addConsoleRoutes } from './http/console-routes.ts';
import { ConsoleFiles, defaultConsoleDir } from './http/console-files.ts';
import { ChangeFeed } from './change-feed.ts';
import { fleetSummary } from './fleet-summary.ts';
import { DEFAULT_PREFIX, Topics } from './mqtt-topics.ts';
import { DIRECTOR_USERNAME, startEmbeddedBroker, type EmbeddedBroker } from './mqtt-broker.ts';
import { MqttBus } from './mqtt-bus.ts';
import { VerifyPool } from './verify-pool.ts';
import { PortInUseError } from './errors.ts';

const inUse = (error: unknown) => (error as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE';

export interface StartOptions {
  dir: string;
  /** A SQLite file path or a postgres:// URL (default DIR/director.db). */
  database?: string;
  port?: number;
  host?: string;
  imageRepoUrl: string;
  /** The image repository's root.json to trust (else trust on first use). */
  imageRepoRoot?: Uint8Array;
  /** A ready image repository view instead of the HTTP client (tests, benchmarks). */
  imageRepo?: ImageRepository;
  /** 'embedded' (default): an aedes broker in this process; { url }: an external MQTT 5 broker. */
  mqtt?: 'embedded' | 'none' | { url: string; username?: string; password?: string; sessionExpirySeconds?: number };
  mqttPort?: number;
  mqttPrefix?: string;
  /** The director's MQTT client ID; default `defaultMqttClientId(dir, prefix)` (stable across restarts). */
  mqttClientId?: string;
  adminToken: string;
  /** A read-only admin token (the console's and the API's viewer role); none: no viewer role. */
  viewerToken?: string;
  /** Lifetime of a web console session (default 12 h). */
  sessionSeconds?: number;
  /** The built web console (director/console/dist); default: UPFLEET_CONSOLE_DIR, else the one of @upfleet/director. */
  consoleDir?: string;
  provisioningToken: string;
  onlinePassphrase?: string;
  approval?: 'auto' | 'manual';
  expiries?: Partial<Expiries>;
  now?: () => Date;
  logger?: Logger;
  logLevel?: string;
  /** Worker threads that verify manifests (verify-pool.ts); 0: verify on the main thread. Default: the machine's cores. */
  verifyWorkers?: number;
  /** Devices a campaign launches per transaction (default campaigns.ts LAUNCH_CHUNK; UPFLEET_CAMPAIGN_LAUNCH_CHUNK for `serve`). */
  campaignLaunchChunk?: number;
  /** How often this process resumes campaign launches cut short (default campaigns.ts LAUNCH_SWEEP_MS). */
  campaignLaunchSweepMs?: number;
}

export interface RunningDirector {
  url: string;
  /** The database in use, without a password. */
  database: string;
  mqttUrl: string | undefined;
  topics: Topics;
  services: DirectorServices;
  /** Every route the HTTP API serves (the OpenAPI test compares them with the document). */
  routes(): Array<{ method: string; pattern: string }>;
  close(): Promise<void>;
}

export async function initDirector(options: InitOptions): Promise<InitResult> {
  return initKeys(options);
}

/** The MQTT client ID of a director on DIR with this topic prefix: the same at every start, so the broker keeps its session. */
export function defaultMqttClientId(dir: string, prefix: string): string {
  return `_director_${createHash('sha256').update(`${resolve(dir)}|${prefix}`).digest('hex').slice(0, 16)}`;
}

/**
 * @throws KeyFileError (keys), UsageError (no init), MalformedMetadataError / UnsignedMetadataError (imageRepoRoot),
 * DatabaseConfigError / StoreUnavailableError (the database),
 * PortInUseError (the HTTP or embedded MQTT port is taken), Error (other listen or broker failures)
 */
export async function startDirector(o: StartOptions): Promise<RunningDirector> {
  if (!o.adminToken || !o.provisioningToken) throw new RangeError('adminToken and provisioningToken are required');
  const log = o.logger ?? pino({ name: 'upfleet-director', level: o.logLevel ?? process.env.UPFLEET_LOG_LEVEL ?? 'info' });
  const now = o.now ?? (() => new Date());
  // Roots first: a directory never initialised says so, not that its passphrase is missing.
  const roots = loadRoots(o.dir);
  const signers = loadOnlineSigners(o.dir, onlinePassphraseFor(o.dir, o.onlinePassphrase));
  checkSignersMatchRoot(roots.get(Math.max(...roots.keys()))!, signers);
  const imageRepo = o.imageRepo ?? new ImageRepoClient({
    url: o.imageRepoUrl, storeDir: join(o.dir, 'image-repo'), ...(o.imageRepoRoot && { root: o.imageRepoRoot }), now, log,
  });
  const database = o.database ?? defaultDatabase(o.dir);
  const store = await openStore(database);
  let verifier: VerifyPool;
  try {
    verifier = await VerifyPool.start(o.verifyWorkers !== undefined ? { size: o.verifyWorkers } : {});
  } catch (error) {
    await store.close();
    throw error;
  }
  const services = new DirectorServices({
    store, signers, roots, imageRepo, expiries: { ...DEFAULT_EXPIRIES, ...o.expiries }, approval: o.approval ?? 'auto',
    adminToken: o.adminToken, provisioningToken: o.provisioningToken, now, log,
    ...(o.campaignLaunchChunk !== undefined && { campaignLaunchChunk: o.campaignLaunchChunk }),
  });
  services.manifests.verifier = verifier;
  const topics = new Topics(o.mqttPrefix ?? DEFAULT_PREFIX);
  const clientId = o.mqttClientId ?? defaultMqttClientId(o.dir, topics.prefix);

  const router = new Router(log, services.metrics);
  const nowSeconds = () => Math.floor(now().getTime() / 1000);
  const access = new AdminAccess({ adminToken: o.adminToken, nowSeconds,
    ...(o.viewerToken && { viewerToken: o.viewerToken }), ...(o.sessionSeconds !== undefined && { sessionSeconds: o.sessionSeconds }) });
  const feed = new ChangeFeed((cursor) => store.changesSince(cursor), 1000, (err) => log.warn({ err }, 'console change feed read failed'));
  addRoutes(router, services, access);
  addConsoleRoutes(router, {
    access, imageRepo, feed, nowSeconds, fleetSummary: () => fleetSummary(store), files: new ConsoleFiles(o.consoleDir ?? defaultConsoleDir()),
  });
  const server: Server = createServer((req, res) => void router.handle(req, res));
  server.keepAliveTimeout = 65_000;
  const host = o.host ?? '127.0.0.1';
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port ?? 0, host, () => resolve());
    });
  } catch (error) {
    await store.close();
    await verifier.close();
    if (inUse(error)) throw new PortInUseError('the director HTTP API', host, o.port ?? 0, '--port', 'choose another with --port P (0 = any free port)', { cause: error });
    throw error;
  }
  const address = server.address();
  const url = `http://${host}:${typeof address === 'object' && address ? address.port : 0}`;

  let broker: EmbeddedBroker | undefined;
  let bus: MqttBus | undefined;
  let mqttUrl: string | undefined;
  const mqtt = o.mqtt ?? 'embedded';
  try {
    if (mqtt === 'embedded') {
      broker = await startEmbeddedBroker({
        port: o.mqttPort ?? 0, host, topics, auth: services.auth, log,
        deviceActive: async (id) => (await store.getDevice(id))?.status === 'active',
      });
      mqttUrl = broker.url;
      bus = await MqttBus.start({ url: broker.url, topics, services, log, protocolVersion: 4, devicesAuthenticated: true, clientId, username: DIRECTOR_USERNAME, password: o.adminToken });
    } else if (mqtt !== 'none') {
      mqttUrl = mqtt.url;
      bus = await MqttBus.start({ url: mqtt.url, topics, services, log, protocolVersion: 5, devicesAuthenticated: false, clientId,
        ...(mqtt.sessionExpirySeconds !== undefined && { sessionExpirySeconds: mqtt.sessionExpirySeconds }),
        ...(mqtt.username !== undefined && { username: mqtt.username }), ...(mqtt.password !== undefined && { password: mqtt.password }) });
    }
  } catch (error) {
    await broker?.close();
    await new Promise((r) => server.close(r));
    await store.close();
    await verifier.close();
    if (inUse(error) && mqtt === 'embedded') {
      throw new PortInUseError('the embedded MQTT broker', host, o.mqttPort ?? 0, '--mqtt-port',
        'another MQTT broker (Mosquitto?) may run there: choose another port with --mqtt-port P (0 = any free port), or use that broker with --mqtt-url, or --no-mqtt',
        { cause: error });
    }
    throw error;
  }
  if (bus) services.ctx.notifier = (deviceId, state) => bus.notify(deviceId, state);
  // Launches a director process killed mid-wave left incomplete: now, then periodically.
  services.campaigns.startLaunchSweep(o.campaignLaunchSweepMs);
  log.info({ url, mqttUrl, prefix: topics.prefix, database: describeDatabase(database) }, 'director started');

  return {
    url, database: describeDatabase(database), mqttUrl, topics, services,
    routes: () => router.routes(),
    async close() {
      await services.campaigns.close();
      services.ctx.notifier = undefined;
      feed.close();
      await bus?.close();
      await broker?.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await store.close();
      await verifier.close();
      log.info({ url }, 'director stopped');
    },
  };
}
