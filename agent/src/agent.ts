/**
 * The agent: wires config, SQLite state, transport and ECU drivers to the
 * update cycle and the state machine runner.
 *
 * Invariants:
 * - One cycle at a time: wake-ups during a cycle coalesce into one more cycle.
 * - One daemon per device: `run` first takes the control socket
 *   (control-socket.ts), before any ECU or the network is touched, and serves
 *   `status` and `check` on it; a second `run` gets AgentRunningError.
 * - The primary key is decrypted once, at start; nothing is written to an ECU
 *   or the network before the device is provisioned (root pinned for both
 *   repositories, key present).
 * - A cycle interrupted by a power loss is resumed by the next cycle call,
 *   before anything new is started.
 * - `close()` waits for the cycle in flight to finish (a first SIGTERM);
 *   `close({ abandonCycle: true })` cuts it short: its requests and ECU
 *   operations fail at once, nothing more of it is persisted (runner.ts), and
 *   the next start finds what a power loss during its step would leave. A
 *   second call joins the first, and may still cut the cycle short.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import pino, { type Logger } from 'pino';
import {
  Ed25519Signer,
  UpfleetError,
  TrustedMetadataSet,
  decryptKeyFile,
  encryptKeyFile,
  readPublicKey,
  metadataFileName,
  type Signer,
} from '@upfleet/core';
import type { AgentConfig } from './config.ts';
import { openDb, KeyValue, type Db } from './db.ts';
import { ConfigError, NotProvisionedError, SerialPortError } from './errors.ts';
import { DeviceTokens } from './device-token.ts';
import { DirectorClient, type RegistrationEcu } from './director-client.ts';
import { HttpFetcher } from './fetcher.ts';
import { ImageCache } from './image-cache.ts';
import { SqliteMetadataStore } from './metadata-store.ts';
import type { MqttChannel } from './mqtt-channel.ts';
import { Outbox } from './outbox.ts';
import { ProgressThrottle, progressKey } from './progress-throttle.ts';
import { ProgressFacts } from './progress-facts.ts';
import { buildSteps, reportFor, type ProgressEvent, type StoredResult } from './cycle.ts';
import { Runner, StateStore, crashHookFromEnv, type CycleResult } from './machine/runner.ts';
import type { FailureRecord, PlannedInstall, State } from './machine/states.ts';
import { LocalInstallSecondary } from './secondaries/local-install.ts';
import { RaucPrimary } from './secondaries/rauc-primary.ts';
import type { Secondary, SecondaryInfo } from './secondaries/secondary.ts';
import { writeFileAtomic } from './atomic-file.ts';
import { Reconnect, type ReconnectOptions } from './reconnect.ts';
import { controlSocketPath, listenControl, type ControlServer } from './control-socket.ts';
import { Liveness, serviceNotifier } from './systemd-notify.ts';

/** After a failed delivery, progress waits this long before it tries again (the cycle's own deliveries do not wait). */
const PROGRESS_RETRY_MS = 10_000;

export interface AgentOptions {
  /** Drivers for the configured secondaries; by default, serial drivers from the config. */
  secondaries?: Secondary[];
  /** The reference time for metadata expiry (tests move it). */
  now?: () => Date;
  onProgress?: (p: ProgressEvent) => void;
  /** The key passphrase; else UPFLEET_KEY_PASSPHRASE, else the config's keyPassphraseFile. */
  passphrase?: string;
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  /** Deliver the outbox over HTTP even when MQTT is configured (check --once). */
  httpOnly?: boolean;
  /** Backoff policy and random source of the MQTT and director reconnects (tests). */
  reconnect?: Pick<ReconnectOptions, 'policy' | 'random'>;
}

export interface CycleOutcome {
  result: CycleResult;
  failure?: FailureRecord;
  /** Messages still waiting in the outbox after the final flush. */
  undelivered: number;
  /** Why the last delivery attempt failed, when messages wait (the typed transport error). */
  deliveryError?: { name: string; code: string; message: string };
}

export interface EcuStatus {
  serial: string;
  hardwareId: string;
  role: 'primary' | 'secondary';
  installed: SecondaryInfo['installed'];
  releaseCounter: number;
  error?: string;
}

export interface AgentStatus {
  deviceId: string;
  provisioned: boolean;
  state: State['name'];
  pending: State['cycle'] | null;
  ecus: EcuStatus[];
  outbox: { manifest: number; progress: number; rejected: number };
  lastResult: StoredResult | null;
  lastCycle: { at: string; result: CycleResult; failure?: FailureRecord } | null;
}

export interface ProvisionResult {
  status: string;
  keyid: string;
  /** Whether this run made the device key or found it (a provisioned device keeps its key). */
  key: 'created' | 'reused';
}

export interface CloseOptions {
  /**
   * Cut the cycle in flight short instead of waiting for it to finish (see the
   * module header): for a caller that gives up on it (the demo's --timeout, a
   * second SIGTERM), not for a first SIGTERM.
   */
  abandonCycle?: boolean;
}

export interface Agent {
  readonly config: AgentConfig;
  provision(): Promise<ProvisionResult>;
  checkOnce(): Promise<CycleOutcome>;
  /**
   * Runs until `close()`: cycles on MQTT notify and every poll interval, and
   * answers `status` and `check` on the control socket.
   * @throws AgentRunningError when another daemon runs for this storage directory.
   */
  run(): Promise<void>;
  status(): Promise<AgentStatus>;
  close(options?: CloseOptions): Promise<void>;
}

/** Where the passphrase for the primary key comes from, in order. @throws ConfigError */
export function resolvePassphrase(config: AgentConfig, options: AgentOptions): string {
  if (options.passphrase !== undefined) return options.passphrase;
  const env = options.env ?? process.env;
  if (env.UPFLEET_KEY_PASSPHRASE) return env.UPFLEET_KEY_PASSPHRASE;
  const credentials = env.CREDENTIALS_DIRECTORY && join(env.CREDENTIALS_DIRECTORY, 'upfleet-key-passphrase');
  const file = config.keyPassphraseFile ?? (credentials && existsSync(credentials) ? credentials : undefined);
  if (file === undefined) throw new ConfigError('keyPassphraseFile', 'no key passphrase: set UPFLEET_KEY_PASSPHRASE or keyPassphraseFile');
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    throw new ConfigError('keyPassphraseFile', `cannot read ${file}: ${(e as Error).message}`);
  }
}

export async function createAgent(config: AgentConfig, options: AgentOptions = {}): Promise<Agent> {
  const env = options.env ?? process.env;
  const log = options.logger ?? pino({ name: 'upfleet-agent', level: env.UPFLEET_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const now = options.now ?? (() => new Date());
  mkdirSync(config.storageDir, { recursive: true });
  const db: Db = openDb(config.storageDir);
  const kv = new KeyValue(db);
  const outbox = new Outbox(db);
  const stateStore = new StateStore(db);
  const directorStore = new SqliteMetadataStore(db, 'director');
  const imageStore = new SqliteMetadataStore(db, 'image');
  const limits = config.limits;

  let signer: Signer | undefined;
  const loadSigner = (): Signer => {
    if (signer) return signer;
    if (!existsSync(config.keyPath)) throw new NotProvisionedError(`primary key ${config.keyPath}`);
    signer = decryptKeyFile(new Uint8Array(readFileSync(config.keyPath)), resolvePassphrase(config, options), config.keyPath);
    return signer;
  };

  // Signing is deferred to the signer loaded at provision or first cycle.
  const lazySigner: Signer = {
    get key() {
      return loadSigner().key;
    },
    sign: (m) => loadSigner().sign(m),
  };
  // Tokens use the real clock: `now` is only the reference time for metadata expiry.
  const tokens = new DeviceTokens(config.deviceId, lazySigner);
  /** Aborted by close({ abandonCycle }): ends the cycle's requests, and the runner persists nothing more. */
  const abandon = new AbortController();
  const director = new DirectorClient(config.directorUrl, config.deviceId, tokens, new HttpFetcher(limits, undefined, abandon.signal));
  const directorFetcher = new HttpFetcher(limits, () => tokens.header(), abandon.signal);
  const imageFetcher = new HttpFetcher(limits, undefined, abandon.signal);
  const images = new ImageCache(join(config.storageDir, 'images'), imageFetcher, config.imageRepoUrl);
  images.prune(imagesStillNeeded(stateStore.load().state));
  const facts = new ProgressFacts(images, kv);

  const primary = primaryInstaller({
    config,
    signer: lazySigner,
    now,
    env,
    log,
    // The default health check of a new slot: the director answers this device.
    directorReachable: async () => {
      await directorFetcher.fetch(`${director.deviceBase}/metadata/timestamp.json`, limits.maxMetadataBytes);
    },
  });
  const secondaries = options.secondaries ?? (await serialDrivers(config));
  const ecus = new Map<string, Secondary>([[primary.ecuSerial, primary]]);
  for (const s of config.ecus.secondaries) {
    const driver = secondaries.find((x) => x.ecuSerial === s.serial);
    if (!driver) throw new ConfigError(`ecus.secondaries`, `no driver for ECU ${s.serial}`);
    ecus.set(s.serial, driver);
  }

  let mqtt: MqttChannel | undefined;
  let stopped!: () => void;
  /** Resolves on close: the run loop stops even when a cycle never settles (a restart is under way). */
  const stopping = new Promise<'stopped'>((resolve) => (stopped = () => resolve('stopped')));
  let wake: (() => void) | undefined;
  let wakeRequested = false;
  let closed = false;

  let flushing: Promise<void> | undefined;
  let flushAgain = false;
  let deliveryError: Error | undefined;
  let lastFailedAt: number | undefined;
  const flushOnce = async (): Promise<void> => {
    try {
      const viaMqtt = mqtt && mqtt.connected && !options.httpOnly;
      const r = await outbox.flush((row) => (viaMqtt ? mqtt!.deliver(row) : director.deliver(row)));
      deliveryError = r.error;
      lastFailedAt = r.stoppedBy ? Date.now() : undefined;
      // A transport failure is the director link's outage, logged once by the run loop.
      if (r.stoppedBy) (isTransport(r.error) ? log.debug.bind(log) : log.warn.bind(log))({ reason: r.stoppedBy, acked: r.acked, ...(r.error && { code: codeOf(r.error) }) }, 'outbox not fully delivered; will retry');
    } catch (e) {
      lastFailedAt = Date.now();
      log.warn({ error: (e as Error).message }, 'outbox flush failed');
    }
  };
  /** One delivery pass at a time; a call during a pass gets one more pass, so what it queued is tried too. */
  const flush = (): Promise<void> => {
    if (flushing) {
      flushAgain = true;
      return flushing;
    }
    flushing = (async () => {
      try {
        do {
          flushAgain = false;
          await flushOnce();
        } while (flushAgain && lastFailedAt === undefined);
      } finally {
        flushing = undefined;
      }
    })();
    return flushing;
  };

  // The systemd watchdog is fed only while the run loop is healthy (systemd-notify.ts).
  const liveness = new Liveness(stallLimitMs(config), Date.now());

  // Progress reaches the director while the transfer runs: rate-limited, coalesced in
  // the outbox, sent in the background. Nothing here may fail or hold up the update.
  const throttle = new ProgressThrottle(config.progressIntervalSeconds * 1000);
  const onProgress = (p: ProgressEvent): void => {
    liveness.beat(Date.now());
    options.onProgress?.(p);
    if (!throttle.admit(p, Date.now())) return;
    try {
      outbox.enqueueLatest('progress', progressKey(p), p);
    } catch (e) {
      log.warn({ error: (e as Error).message, ecuSerial: p.ecuSerial }, 'progress not queued');
      return;
    }
    if (lastFailedAt === undefined || Date.now() - lastFailedAt >= PROGRESS_RETRY_MS) void flush();
  };

  const isProvisioned = (): boolean =>
    existsSync(config.keyPath) && directorStore.readSync(metadataFileName('root')) !== undefined && imageStore.readSync(metadataFileName('root')) !== undefined;

  let runner: Runner | undefined;
  const getRunner = (): Runner => {
    if (runner) return runner;
    if (!isProvisioned()) throw new NotProvisionedError(existsSync(config.keyPath) ? 'pinned repository roots' : `primary key ${config.keyPath}`);
    const steps = buildSteps({
      config,
      signer: loadSigner(),
      ecus,
      directorBase: director.deviceBase,
      directorFetcher,
      imageFetcher,
      directorStore,
      imageStore,
      images,
      facts,
      outbox,
      kv,
      now,
      onProgress,
      flush,
      log: (msg, fields) => log.info(fields ?? {}, msg),
    });
    runner = new Runner({
      store: stateStore,
      steps,
      ecuCount: ecus.size,
      measure: (fact, state) => facts.measure(fact, state),
      hooks: {
        onTransition: (from, event, to) => {
          liveness.beat(Date.now());
          log.info({ from: from.name, event: event.type, to: to.name, cycle: to.cycle.cycleId, ...(event.type === 'failed' && { error: event.error.message, code: (event.error as { code?: string }).code }) }, 'transition');
        },
        ...(crashHookFromEnv(env) !== undefined && { crashAt: crashHookFromEnv(env)! }),
      },
    });
    return runner;
  };

  // Once per start, before any cycle: the RAUC installer confirms the booted slot to the
  // bootloader (a slot on trial waits for its health check, in the resumed activation).
  let bootConfirmed = !(primary instanceof RaucPrimary);
  const confirmBoot = async (): Promise<void> => {
    if (bootConfirmed || !(primary instanceof RaucPrimary)) return;
    try {
      await primary.confirmBoot();
      bootConfirmed = true;
    } catch (e) {
      log.error({ error: (e as Error).message }, 'cannot confirm the booted slot to the bootloader yet; trying again before the next cycle');
    }
  };

  let cycling: Promise<CycleOutcome> | undefined;
  const cycleOnce = async (): Promise<CycleOutcome> => {
    await confirmBoot();
    throttle.reset();
    const result = await getRunner().runCycle(randomBytes(8).toString('hex'), abandon.signal);
    const failure = stateStore.load().state.cycle.failure;
    kv.set('lastCycle', { at: now().toISOString(), result, ...(failure && { failure }) });
    await flush();
    const c = outbox.counts();
    const undelivered = c.manifest + c.progress;
    const why = undelivered > 0 && deliveryError;
    return {
      result, ...(failure && { failure }), undelivered,
      ...(why && { deliveryError: { name: why.name, code: codeOf(why), message: why.message } }),
    };
  };
  const checkOnce = (): Promise<CycleOutcome> => {
    cycling ??= cycleOnce().finally(() => (cycling = undefined));
    return cycling;
  };

  async function provision(): Promise<ProvisionResult> {
    const passphrase = resolvePassphrase(config, options);
    const created = !existsSync(config.keyPath);
    if (created) {
      // The key is the device's identity at the director: a registered device never makes another.
      const registered = kv.get<{ keyid?: string }>('registered');
      if (registered) throw new ConfigError('keyPath', `this device registered with key ${registered.keyid ?? '(unknown)'}, but ${config.keyPath} is missing: restore it (is the data partition mounted?)`);
      mkdirSync(dirname(config.keyPath), { recursive: true, mode: 0o700 });
      writeFileAtomic(config.keyPath, encryptKeyFile(Ed25519Signer.generate(), passphrase));
    } else {
      readPublicKey(new Uint8Array(readFileSync(config.keyPath)));
    }
    const s = loadSigner();
    log.info({ keyid: s.key.keyid, keyPath: config.keyPath }, created ? 'device key created' : 'existing device key reused');
    pinRoot(directorStore, config.provisioning.directorRoot, 'provisioning.directorRoot', now());
    pinRoot(imageStore, config.provisioning.imageRepoRoot, 'provisioning.imageRepoRoot', now());
    const token = config.provisioning.token ?? env.UPFLEET_PROVISIONING_TOKEN;
    if (!token) throw new ConfigError('provisioning.token', 'a provisioning token is needed to register (or set UPFLEET_PROVISIONING_TOKEN)');
    const entry = async (serial: string): Promise<RegistrationEcu> => {
      const info = await ecus.get(serial)!.info();
      return { ecuSerial: serial, hardwareId: info.hardwareId, publicKey: info.publicKey.toJSON() };
    };
    const body = {
      primary: await entry(config.ecus.primary.serial),
      secondaries: await Promise.all(config.ecus.secondaries.map((x) => entry(x.serial))),
    };
    const res = await director.register(body, token);
    kv.set('registered', { at: now().toISOString(), status: res.status, keyid: s.key.keyid });
    log.info({ status: res.status, keyid: s.key.keyid }, 'provisioned');
    return { status: res.status, keyid: s.key.keyid, key: created ? 'created' : 'reused' };
  }

  let control: ControlServer | undefined;
  const notifier = serviceNotifier({ env, pid: process.pid, warn: (msg, fields) => log.warn(fields, msg) });
  let watchdog: NodeJS.Timeout | undefined;
  /** run()'s start: close() waits for it, so that it closes what the start opened. */
  let starting: Promise<void> | undefined;

  /** The control socket, the MQTT channel and the watchdog timer. */
  async function start(): Promise<void> {
    control ??= await listenControl({
      path: controlSocketPath(config.storageDir),
      db,
      handlers: {
        status,
        // A cycle that starts after the request: one in flight may predate what the caller expects.
        check: async () => {
          await cycling?.catch(() => undefined);
          return checkOnce();
        },
      },
    });
    if (config.mqttUrl && !mqtt) {
      loadSigner();
      // Loaded only when a broker is configured: it is the largest dependency (idle memory).
      const { MqttChannel } = await import('./mqtt-channel.ts');
      mqtt = new MqttChannel({
        url: config.mqttUrl,
        deviceId: config.deviceId,
        prefix: config.mqttTopicPrefix,
        tokens,
        onNotify: () => trigger(),
        onConnect: () => {
          log.info({}, 'mqtt connected');
          void flush();
        },
        log,
        ...(options.reconnect && { reconnect: options.reconnect }),
      });
    }
    if (notifier?.watchdogIntervalMs !== undefined && !watchdog) {
      let stalled = false;
      watchdog = setInterval(() => {
        const healthy = liveness.healthy(Date.now());
        if (healthy) notifier.watchdog();
        else if (!stalled) log.error({ stallLimitMs: stallLimitMs(config) }, 'the update cycle shows no activity: the systemd watchdog is no longer fed');
        stalled = !healthy;
      }, notifier.watchdogIntervalMs);
    }
    notifier?.ready('serving');
  }

  async function run(): Promise<void> {
    starting = start();
    await starting;
    // A cycle that cannot reach the director is retried with backoff, never later than the next poll.
    const directorLink = new Reconnect({ link: 'director', log, ...options.reconnect });
    while (!closed) {
      wakeRequested = false;
      let waitMs = config.pollIntervalSeconds * 1000;
      liveness.busy(Date.now());
      try {
        const outcome = await Promise.race([checkOnce(), stopping]);
        if (outcome === 'stopped') break;
        log.info({ result: outcome.result, failure: outcome.failure?.message, undelivered: outcome.undelivered }, 'cycle done');
        const unreachable = directorUnreachable(outcome);
        if (unreachable) waitMs = Math.min(waitMs, directorLink.failed(unreachable));
        else directorLink.succeeded();
      } catch (e) {
        log.error({ error: (e as Error).message, code: (e as { code?: string }).code }, 'cycle failed');
      }
      liveness.idle();
      if (closed) break;
      // Idle until the next cycle: give back the pages SQLite cached during this one.
      db.pragma('shrink_memory');
      if (!wakeRequested) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, waitMs);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = undefined;
      }
    }
  }

  function trigger(): void {
    wakeRequested = true;
    wake?.();
  }

  async function status(): Promise<AgentStatus> {
    const { state } = stateStore.load();
    const ecuStatus: EcuStatus[] = [];
    for (const [serial, e] of ecus) {
      const role = serial === primary.ecuSerial ? 'primary' : 'secondary';
      const hw = serial === primary.ecuSerial ? config.ecus.primary.hardwareId : config.ecus.secondaries.find((x) => x.serial === serial)!.hardwareId;
      try {
        const info = await withTimeout(e.info(), 5000);
        ecuStatus.push({ serial, hardwareId: info.hardwareId, role, installed: info.installed, releaseCounter: info.releaseCounter });
      } catch (err) {
        ecuStatus.push({ serial, hardwareId: hw, role, installed: null, releaseCounter: 0, error: (err as Error).message });
      }
    }
    return {
      deviceId: config.deviceId,
      provisioned: isProvisioned(),
      state: state.name,
      pending: state.name === 'idle' ? null : state.cycle,
      ecus: ecuStatus,
      outbox: outbox.counts(),
      lastResult: kv.get<StoredResult>('lastResult') ?? null,
      lastCycle: kv.get('lastCycle') ?? null,
    };
  }

  let closing: Promise<void> | undefined;
  let ecusClosing: Promise<void> | undefined;
  const closeEcus = () => (ecusClosing ??= (async () => {
    for (const e of ecus.values()) await e.close().catch(() => undefined);
  })());

  /** Every call joins the first; one with abandonCycle also cuts short a cycle that an earlier call waits for. */
  function close({ abandonCycle = false }: CloseOptions = {}): Promise<void> {
    if (abandonCycle && !abandon.signal.aborted) {
      // The step in flight then ends at once: its requests fail, and so do its ECU operations
      // as their drivers close (an install command on the primary still runs to its end).
      abandon.abort();
      void closeEcus();
    }
    return (closing ??= shutdown());
  }

  async function shutdown(): Promise<void> {
    closed = true;
    stopped();
    wake?.();
    await starting?.catch(() => undefined);
    if (watchdog) clearInterval(watchdog);
    if (control) notifier?.stopping();
    await control?.close();
    // A cycle waiting for the machine to restart never ends in this boot: do not wait for it.
    const restarting = primary.rebootRequested;
    await Promise.race([cycling?.catch(() => undefined), restarting]);
    await mqtt?.close().catch(() => undefined);
    await closeEcus();
    db.close();
    await notifier?.flush();
  }

  return { config, provision, checkOnce, run, status, close };
}

/**
 * How long a cycle may show no activity (no transition, no progress) before
 * the watchdog stops being fed: twice the longest single wait the config
 * allows (an install command, a restart, a request), plus a minute.
 */
export function stallLimitMs(config: AgentConfig): number {
  const i = config.ecus.primary.installer;
  const longest = Math.max(i.timeoutSeconds, i.type === 'rauc' ? i.rebootTimeoutSeconds : 0, config.limits.requestTimeoutSeconds);
  return (2 * longest + 60) * 1000;
}

/** Reads this boot's ID; UPFLEET_TEST_BOOT_ID replaces it in test mode (a simulated restart). */
export function bootIdReader(env: NodeJS.ProcessEnv): () => string {
  const hooks = env.NODE_ENV === 'test' || env.UPFLEET_ENABLE_TEST_HOOKS === '1';
  if (hooks && env.UPFLEET_TEST_BOOT_ID) return () => env.UPFLEET_TEST_BOOT_ID!;
  return () => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}

/** The primary's own installer, as configured (config.ts PrimaryInstaller). */
function primaryInstaller(o: {
  config: AgentConfig;
  signer: Signer;
  now: () => Date;
  env: NodeJS.ProcessEnv;
  log: Logger;
  directorReachable: () => Promise<void>;
}): LocalInstallSecondary | RaucPrimary {
  const { serial, hardwareId, installer } = o.config.ecus.primary;
  const dir = join(o.config.storageDir, 'primary');
  if (installer.type === 'handler') {
    return new LocalInstallSecondary({ ecuSerial: serial, hardwareId, installCommand: installer.command, timeoutSeconds: installer.timeoutSeconds, signer: o.signer, dir, bootId: bootIdReader(o.env), now: o.now });
  }
  return new RaucPrimary({
    ecuSerial: serial,
    hardwareId,
    installer,
    signer: o.signer,
    dir,
    directorReachable: o.directorReachable,
    bootId: bootIdReader(o.env),
    log: (msg, fields) => o.log.info({ ecuSerial: serial, ...fields }, msg),
    env: o.env,
    now: o.now,
  });
}

/**
 * Pins a repository's initial root from a provisioning file: it must be a
 * root signed by a threshold of its own keys. A root already trusted is kept
 * (it may be newer than the provisioning file). @throws ConfigError
 */
function pinRoot(store: SqliteMetadataStore, path: string, field: string, now: Date): void {
  if (store.readSync(metadataFileName('root')) !== undefined) return;
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new ConfigError(field, `cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    new TrustedMetadataSet(bytes, now);
  } catch (e) {
    throw new ConfigError(field, `${path} is not a valid self-signed root: ${(e as Error).message}`);
  }
  store.writeSync(metadataFileName('root'), bytes);
}

/**
 * Serial drivers for the configured secondaries. Each port is opened on first
 * use (and again after a failed open), so a missing ECU does not stop the
 * agent from starting, reporting status, or updating the others.
 */
async function serialDrivers(config: AgentConfig): Promise<Secondary[]> {
  if (config.ecus.secondaries.length === 0) return [];
  const { SerialSecondary } = await import('./secondaries/serial-secondary.ts');
  return config.ecus.secondaries.map((s, i) => lazySecondary(s.serial, () => SerialSecondary.open({ path: s.port, baudRate: s.baud, ecuSerial: s.serial })
    .catch((cause: unknown) => Promise.reject(new SerialPortError(s.serial, `ecus.secondaries[${i}].port`, s.port, { cause })))));
}

function lazySecondary(ecuSerial: string, open: () => Promise<Secondary>): Secondary {
  let driver: Promise<Secondary> | undefined;
  const get = (): Promise<Secondary> => {
    driver ??= open().catch((e: unknown) => {
      driver = undefined;
      throw e;
    });
    return driver;
  };
  return {
    ecuSerial,
    info: async () => (await get()).info(),
    versionReport: async (nonce) => (await get()).versionReport(nonce),
    putMetadata: async (bundle) => (await get()).putMetadata(bundle),
    install: async (image, onProgress) => (await get()).install(image, onProgress),
    activate: async () => (await get()).activate(),
    abort: async () => (await get()).abort(),
    close: async () => {
      if (driver) await (await driver.catch(() => undefined))?.close();
    },
  };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e) => (clearTimeout(t), reject(e)),
    );
  });
}

/**
 * The images a start-up must keep: those of a cycle still under way (it
 * resumes) or of one that failed and will be retried (its download resumes);
 * anything else in the cache is left over.
 */
function imagesStillNeeded(state: State): PlannedInstall[] {
  const { failure, plan } = state.cycle;
  if (state.name !== 'idle') return plan;
  return failure && reportFor(failure).retryable ? plan : [];
}

const TRANSPORT_CODES = new Set(['DOWNLOAD', 'HTTP', 'SLOW_RETRIEVAL']);

function isTransport(e: Error | undefined): boolean {
  return e !== undefined && TRANSPORT_CODES.has(codeOf(e));
}

/** The transport error that kept a cycle from the director (its requests or the outbox), if one did. */
function directorUnreachable(outcome: CycleOutcome): Error | undefined {
  const f = outcome.failure;
  if (f && (f.state === 'sendingManifest' || f.state === 'checkingDirector') && TRANSPORT_CODES.has(f.code)) return Object.assign(new Error(f.message), { code: f.code });
  const d = outcome.deliveryError;
  if (d && TRANSPORT_CODES.has(d.code)) return Object.assign(new Error(d.message), { code: d.code });
  return undefined;
}

function codeOf(e: Error): string {
  return e instanceof UpfleetError ? e.code : 'INTERNAL';
}
