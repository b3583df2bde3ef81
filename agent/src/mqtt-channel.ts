/**
 * The MQTT control plane of one device (director/README.md "MQTT"): notify in,
 * manifests and progress out with QoS 1, and a retained online/offline status
 * with a Last Will. Optional: without a broker the agent polls over HTTP.
 *
 * Invariants:
 * - A publish counts as delivered only when its PUBACK arrives (publishAsync
 *   resolves on it); until then the message stays in the outbox.
 * - The password is a short-lived device token, renewed before each reconnect.
 * - Persistent session (clean: false, clientId = deviceId), so a notify sent
 *   while the link was down is delivered after reconnect.
 * - Reconnects are ours, not mqtt.js's fixed period: exponential backoff with
 *   jitter and one warning per outage (reconnect.ts).
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { DeviceTokens } from './device-token.ts';
import type { Delivery, OutboxRow } from './outbox.ts';
import { Reconnect, type OutageLog, type ReconnectOptions } from './reconnect.ts';

export interface MqttChannelOptions {
  url: string;
  deviceId: string;
  prefix: string;
  tokens: DeviceTokens;
  onNotify: (payload: unknown) => void;
  onConnect?: () => void;
  log?: OutageLog;
  /** Backoff policy and random source (tests). */
  reconnect?: Pick<ReconnectOptions, 'policy' | 'random'>;
}

export class MqttChannel {
  readonly #client: MqttClient;
  readonly #topic: string;
  readonly #reconnect: Reconnect;
  #retryTimer: NodeJS.Timeout | undefined;
  #closing = false;

  constructor(o: MqttChannelOptions) {
    const log = o.log ?? SILENT;
    this.#reconnect = new Reconnect({ link: 'mqtt broker', log, ...o.reconnect });
    this.#topic = `${o.prefix}/devices/${o.deviceId}`;
    this.#client = mqtt.connect(o.url, {
      clientId: o.deviceId,
      username: o.deviceId,
      password: o.tokens.current(),
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      will: { topic: `${this.#topic}/status`, payload: Buffer.from('offline'), qos: 1, retain: true },
    });
    // mqtt.js emits 'error' (if any) before 'close' for a failed attempt or a lost link.
    let lastError: Error | undefined;
    let wasConnected = false;
    this.#client.on('error', (e) => (lastError = e));
    this.#client.on('close', () => {
      if (this.#closing || this.#retryTimer !== undefined) return; // one retry scheduled per failure
      const cause = lastError ?? new Error(wasConnected ? 'connection lost' : 'connection closed before CONNACK');
      lastError = undefined;
      wasConnected = false;
      const delayMs = this.#reconnect.failed(cause);
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        this.#client.options.password = o.tokens.current();
        this.#client.reconnect();
      }, delayMs);
    });
    this.#client.on('connect', () => {
      wasConnected = true;
      this.#reconnect.succeeded();
      // Nagle off, as on the director's side: small MQTT packets must not wait for ACKs.
      (this.#client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      this.#client.subscribe(`${this.#topic}/notify`, { qos: 1 }, (err) => {
        if (err) log.warn({ error: err.message }, 'mqtt subscribe failed');
      });
      this.#client.publish(`${this.#topic}/status`, 'online', { qos: 1, retain: true });
      o.onConnect?.();
    });
    this.#client.on('message', (topic, payload) => {
      if (topic !== `${this.#topic}/notify`) return;
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(payload.toString('utf8'));
      } catch {
        // a notify only wakes the agent; its content is not trusted anyway
      }
      o.onNotify(parsed);
    });
  }

  get connected(): boolean {
    return this.#client.connected;
  }

  /** Publishes one outbox message with QoS 1; acknowledged on PUBACK. */
  async deliver(row: OutboxRow): Promise<Delivery> {
    if (!this.#client.connected) return { outcome: 'retry', reason: 'mqtt not connected' };
    try {
      await withTimeout(this.#client.publishAsync(`${this.#topic}/${row.kind}`, row.payload, { qos: 1 }), 15_000);
      return { outcome: 'ack' };
    } catch (e) {
      return { outcome: 'retry', reason: `mqtt publish: ${(e as Error).message}` };
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#retryTimer);
    if (this.#client.connected) {
      await withTimeout(this.#client.publishAsync(`${this.#topic}/status`, 'offline', { qos: 1, retain: true }), 2000).catch(() => undefined);
    }
    await this.#client.endAsync(true);
  }
}

const SILENT: OutageLog = { warn: () => undefined, debug: () => undefined, info: () => undefined };

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e) => (clearTimeout(t), reject(e)),
    );
  });
}
