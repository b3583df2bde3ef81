/**
 * Agent configuration: a JSON file, then UPFLEET_* environment variables, then
 * command-line flags, each overriding the one before. The merged object is
 * validated once at start; the first bad value raises a ConfigError naming its
 * JSON path (e.g. `ecus.secondaries[1].baud`). Nothing else reads the raw file.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from './errors.ts';

/** The generic install handler (docs/install-handlers.md): one command run per phase. */
export interface HandlerInstaller {
  type: 'handler';
  /** Run with phase install|activate|health|commit|rollback (env UPFLEET_PHASE) and the image path. */
  command: string;
  /** Seconds the handler may run per phase. */
  timeoutSeconds: number;
}

/** RAUC (A/B): the image is a RAUC bundle, installed with `rauc install` into the other slot. */
export interface RaucInstaller {
  type: 'rauc';
  /** Run (through /bin/sh) to restart into the new slot. */
  rebootCommand: string;
  /** Run after the restart in the new slot; exit 0 = healthy. Absent: healthy once the director answers. */
  healthCheck?: string;
  /** Seconds `rauc install`, the health check and each other rauc call may take. */
  timeoutSeconds: number;
  /** Seconds to wait for the restart the reboot command asked for before giving up (and rolling back). */
  rebootTimeoutSeconds: number;
}

export type PrimaryInstaller = HandlerInstaller | RaucInstaller;

export interface PrimaryEcuConfig {
  serial: string;
  hardwareId: string;
  /** How the primary installs its own image (`installer` in the file; `installCommand` is the handler's short form). */
  installer: PrimaryInstaller;
}

export interface SecondaryEcuConfig {
  serial: string;
  hardwareId: string;
  port: string;
  baud: number;
  verification: 'partial' | 'full';
}

export interface Limits {
  /** Cap for root, timestamp, snapshot and targets downloads (endless-data defence). */
  maxMetadataBytes: number;
  /** Cap for any image, whatever targets says. */
  maxImageBytes: number;
  /** Cap for the director's answers to registration, manifests and events (JSON). */
  maxResponseBytes: number;
  /** Slow-retrieval defence: the average rate over `slowWindowSeconds` must stay above this. */
  minBytesPerSecond: number;
  slowWindowSeconds: number;
  /** Deadline of each request, whole body included; a GET gets its length (signed, or the cap) at `minBytesPerSecond` on top. */
  requestTimeoutSeconds: number;
  /** Download attempts per image (each resumes with Range). */
  downloadAttempts: number;
}

export interface AgentConfig {
  deviceId: string;
  directorUrl: string;
  imageRepoUrl: string;
  mqttUrl?: string;
  /** MQTT topic root; the device's topics are `<prefix>/devices/<deviceId>/...`. */
  mqttTopicPrefix: string;
  /**
   * The agent's state: database (pinned roots, outbox, cycle state, registration),
   * image cache, primary slot state, device key. On an A/B device it must sit on
   * the shared data partition, which survives a slot switch (default DEFAULT_STORAGE_DIR).
   */
  storageDir: string;
  /** The encrypted device key (default `<storageDir>/keys/primary.key`). */
  keyPath: string;
  /** File holding the key passphrase, when UPFLEET_KEY_PASSPHRASE is not set. */
  keyPassphraseFile?: string;
  pollIntervalSeconds: number;
  /** Least time between two progress events of one ECU's download or install sent to the director. */
  progressIntervalSeconds: number;
  provisioning: { directorRoot: string; imageRepoRoot: string; token?: string };
  limits: Limits;
  ecus: { primary: PrimaryEcuConfig; secondaries: SecondaryEcuConfig[] };
}

/** Where the agent's state lives when the config names no `storageDir`. */
export const DEFAULT_STORAGE_DIR = '/var/lib/upfleet';

export const DEFAULT_LIMITS: Limits = {
  maxMetadataBytes: 4 * 1024 * 1024,
  maxImageBytes: 8 * 1024 * 1024 * 1024,
  maxResponseBytes: 64 * 1024,
  minBytesPerSecond: 1024,
  slowWindowSeconds: 10,
  requestTimeoutSeconds: 60,
  downloadAttempts: 5,
};

/** Top-level scalar settings that UPFLEET_<NAME> and --<name> may override. */
const OVERRIDABLE = {
  deviceId: 'string',
  directorUrl: 'string',
  imageRepoUrl: 'string',
  mqttUrl: 'string',
  mqttTopicPrefix: 'string',
  storageDir: 'string',
  keyPath: 'string',
  keyPassphraseFile: 'string',
  pollIntervalSeconds: 'number',
} as const;

/** `pollIntervalSeconds` -> `UPFLEET_POLL_INTERVAL_SECONDS`. */
export function envName(field: string): string {
  return 'UPFLEET_' + field.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
}

/** `pollIntervalSeconds` -> `poll-interval-seconds`. */
export function flagName(field: string): string {
  return field.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

export const OVERRIDABLE_FIELDS = Object.keys(OVERRIDABLE) as Array<keyof typeof OVERRIDABLE>;

type Raw = Record<string, unknown>;

function isObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(obj: Raw, key: string, path: string): string {
  const v = obj[key];
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(`${path}${key}`, v === undefined ? 'is required' : 'must be a non-empty string');
  return v;
}

function optStr(obj: Raw, key: string, path: string): string | undefined {
  return obj[key] === undefined ? undefined : str(obj, key, path);
}

function url(obj: Raw, key: string, path: string, protocols: string[]): string {
  const v = str(obj, key, path);
  let parsed: URL;
  try {
    parsed = new URL(v);
  } catch {
    throw new ConfigError(`${path}${key}`, `"${v}" is not a URL`);
  }
  if (!protocols.includes(parsed.protocol)) throw new ConfigError(`${path}${key}`, `protocol must be one of ${protocols.join(' ')}`);
  return v.replace(/\/+$/, '');
}

function num(obj: Raw, key: string, path: string, min: number, fallback?: number): number {
  const v = obj[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${path}${key}`, v === undefined ? 'is required' : 'must be a number');
  if (v < min) throw new ConfigError(`${path}${key}`, `must be at least ${min}`);
  return v;
}

function obj(o: Raw, key: string, path: string): Raw {
  const v = o[key];
  if (!isObject(v)) throw new ConfigError(`${path}${key}`, v === undefined ? 'is required' : 'must be an object');
  return v;
}

function parseLimits(raw: unknown): Limits {
  if (raw === undefined) return { ...DEFAULT_LIMITS };
  if (!isObject(raw)) throw new ConfigError('limits', 'must be an object');
  const p = 'limits.';
  return {
    maxMetadataBytes: num(raw, 'maxMetadataBytes', p, 1024, DEFAULT_LIMITS.maxMetadataBytes),
    maxImageBytes: num(raw, 'maxImageBytes', p, 1, DEFAULT_LIMITS.maxImageBytes),
    maxResponseBytes: num(raw, 'maxResponseBytes', p, 1024, DEFAULT_LIMITS.maxResponseBytes),
    minBytesPerSecond: num(raw, 'minBytesPerSecond', p, 0, DEFAULT_LIMITS.minBytesPerSecond),
    slowWindowSeconds: num(raw, 'slowWindowSeconds', p, 0.1, DEFAULT_LIMITS.slowWindowSeconds),
    requestTimeoutSeconds: num(raw, 'requestTimeoutSeconds', p, 0.1, DEFAULT_LIMITS.requestTimeoutSeconds),
    downloadAttempts: num(raw, 'downloadAttempts', p, 1, DEFAULT_LIMITS.downloadAttempts),
  };
}

const INSTALLER_TYPES = ['handler', 'rauc'] as const;

function parseInstaller(raw: unknown): PrimaryInstaller {
  const p = 'ecus.primary.installer.';
  if (!isObject(raw)) throw new ConfigError('ecus.primary.installer', 'must be an object');
  if (!INSTALLER_TYPES.includes(raw.type as never)) throw new ConfigError(`${p}type`, `must be one of ${INSTALLER_TYPES.map((t) => `"${t}"`).join(', ')}`);
  const allowed = raw.type === 'rauc' ? ['type', 'rebootCommand', 'healthCheck', 'timeoutSeconds', 'rebootTimeoutSeconds'] : ['type', 'command', 'timeoutSeconds'];
  const unknown = Object.keys(raw).find((k) => !allowed.includes(k));
  if (unknown !== undefined) throw new ConfigError(`${p}${unknown}`, `is not a setting of the "${raw.type as string}" installer (it takes ${allowed.join(', ')})`);
  if (raw.type === 'handler') return { type: 'handler', command: str(raw, 'command', p), timeoutSeconds: num(raw, 'timeoutSeconds', p, 1, 600) };
  const healthCheck = optStr(raw, 'healthCheck', p);
  return {
    type: 'rauc',
    rebootCommand: optStr(raw, 'rebootCommand', p) ?? 'systemctl reboot',
    ...(healthCheck !== undefined && { healthCheck }),
    timeoutSeconds: num(raw, 'timeoutSeconds', p, 1, 1800),
    rebootTimeoutSeconds: num(raw, 'rebootTimeoutSeconds', p, 1, 600),
  };
}

function parsePrimary(raw: Raw): PrimaryEcuConfig {
  const p = 'ecus.primary.';
  const short = raw.installCommand !== undefined || raw.installTimeoutSeconds !== undefined;
  if (short && raw.installer !== undefined) throw new ConfigError(`${p}installCommand`, 'give either "installer" or "installCommand", not both');
  if (!short && raw.installer === undefined) throw new ConfigError(`${p}installer`, 'is required (e.g. { "type": "rauc" }), or "installCommand" for an install handler');
  return {
    serial: str(raw, 'serial', p),
    hardwareId: str(raw, 'hardwareId', p),
    installer: short
      ? { type: 'handler', command: str(raw, 'installCommand', p), timeoutSeconds: num(raw, 'installTimeoutSeconds', p, 1, 600) }
      : parseInstaller(raw.installer),
  };
}

function parseSecondary(raw: unknown, i: number): SecondaryEcuConfig {
  const p = `ecus.secondaries[${i}].`;
  if (!isObject(raw)) throw new ConfigError(`ecus.secondaries[${i}]`, 'must be an object');
  const verification = raw.verification ?? 'partial';
  if (verification !== 'partial' && verification !== 'full') throw new ConfigError(`${p}verification`, 'must be "partial" or "full"');
  const baud = num(raw, 'baud', p, 300, 115200);
  if (!Number.isInteger(baud)) throw new ConfigError(`${p}baud`, 'must be an integer');
  return { serial: str(raw, 'serial', p), hardwareId: str(raw, 'hardwareId', p), port: str(raw, 'port', p), baud, verification };
}

/**
 * Validates a merged configuration object.
 * @throws ConfigError naming the first bad field.
 */
export function parseConfig(raw: unknown): AgentConfig {
  if (!isObject(raw)) throw new ConfigError('(root)', 'must be a JSON object');
  const provisioning = obj(raw, 'provisioning', '');
  const ecus = obj(raw, 'ecus', '');
  const secondariesRaw = ecus.secondaries ?? [];
  if (!Array.isArray(secondariesRaw)) throw new ConfigError('ecus.secondaries', 'must be an array');
  const storageDir = raw.storageDir === undefined ? DEFAULT_STORAGE_DIR : str(raw, 'storageDir', '');
  const config: AgentConfig = {
    deviceId: str(raw, 'deviceId', ''),
    directorUrl: url(raw, 'directorUrl', '', ['http:', 'https:']),
    imageRepoUrl: url(raw, 'imageRepoUrl', '', ['http:', 'https:']),
    ...(raw.mqttUrl !== undefined && raw.mqttUrl !== '' && { mqttUrl: url(raw, 'mqttUrl', '', ['mqtt:', 'mqtts:', 'ws:', 'wss:', 'tcp:']) }),
    mqttTopicPrefix: (optStr(raw, 'mqttTopicPrefix', '') ?? 'upfleet/v1').replace(/\/+$/, ''),
    storageDir,
    keyPath: raw.keyPath === undefined ? join(storageDir, 'keys', 'primary.key') : str(raw, 'keyPath', ''),
    ...(raw.keyPassphraseFile !== undefined && { keyPassphraseFile: str(raw, 'keyPassphraseFile', '') }),
    pollIntervalSeconds: num(raw, 'pollIntervalSeconds', '', 1, 300),
    progressIntervalSeconds: num(raw, 'progressIntervalSeconds', '', 0.1, 2),
    provisioning: {
      directorRoot: str(provisioning, 'directorRoot', 'provisioning.'),
      imageRepoRoot: str(provisioning, 'imageRepoRoot', 'provisioning.'),
      ...(provisioning.token !== undefined && { token: str(provisioning, 'token', 'provisioning.') }),
    },
    limits: parseLimits(raw.limits),
    ecus: { primary: parsePrimary(obj(ecus, 'primary', 'ecus.')), secondaries: secondariesRaw.map(parseSecondary) },
  };
  const serials = [config.ecus.primary.serial, ...config.ecus.secondaries.map((s) => s.serial)];
  const dup = serials.find((s, i) => serials.indexOf(s) !== i);
  if (dup !== undefined) throw new ConfigError('ecus', `ECU serial "${dup}" appears twice`);
  if (!/^[A-Za-z0-9._-]+$/.test(config.deviceId)) throw new ConfigError('deviceId', 'may hold only letters, digits, ".", "_" and "-"');
  return config;
}

export interface LoadOptions {
  /** Path of the JSON file; optional when env and flags give everything. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Overrides by field name (already parsed from flags). */
  overrides?: Partial<Record<keyof typeof OVERRIDABLE, string>>;
}

/**
 * Reads the file, applies UPFLEET_* env and flag overrides, validates.
 * @throws ConfigError
 */
export function loadConfig(options: LoadOptions): AgentConfig {
  let raw: Raw = {};
  if (options.file !== undefined) {
    let text: string;
    try {
      text = readFileSync(options.file, 'utf8');
    } catch (cause) {
      throw new ConfigError('(file)', `cannot read ${options.file}: ${(cause as Error).message}`);
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (!isObject(parsed)) throw new ConfigError('(root)', 'must be a JSON object');
      raw = parsed;
    } catch (cause) {
      if (cause instanceof ConfigError) throw cause;
      throw new ConfigError('(file)', `${options.file} is not valid JSON: ${(cause as Error).message}`);
    }
  }
  const env = options.env ?? {};
  for (const field of OVERRIDABLE_FIELDS) {
    const fromEnv = env[envName(field)];
    const value = options.overrides?.[field] ?? fromEnv;
    if (value === undefined) continue;
    if (OVERRIDABLE[field] === 'number') {
      const n = Number(value);
      if (value.trim() === '' || !Number.isFinite(n)) throw new ConfigError(field, `"${value}" is not a number`);
      raw[field] = n;
    } else {
      raw[field] = value;
    }
  }
  const token = env.UPFLEET_PROVISIONING_TOKEN;
  if (token !== undefined && isObject(raw.provisioning)) raw.provisioning = { ...raw.provisioning, token };
  // One image serves a whole fleet: the primary's serial, unique per device, can come from first boot.
  const primarySerial = env.UPFLEET_PRIMARY_SERIAL;
  if (primarySerial !== undefined && isObject(raw.ecus) && isObject(raw.ecus.primary)) {
    raw.ecus = { ...raw.ecus, primary: { ...raw.ecus.primary, serial: primarySerial } };
  }
  return parseConfig(raw);
}
