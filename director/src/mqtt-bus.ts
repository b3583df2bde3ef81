/**
 * The director's MQTT client: consumes device manifests, progress events and
 * status with shared subscriptions (`$share/director/...`, so several directors
 * split the load), publishes notify (QoS 1) when a device's metadata changes and
 * an ack per MQTT manifest. Each message is handled on its own; a refusal is
 * answered on the device's ack topic, never thrown. TCP_NODELAY on every socket
 * the client opens (reconnects included). The session is persistent under a
 * stable client ID, so manifests sent while the director restarts wait in the
 * broker instead of being lost.
 * A message is acknowledged (PUBACK) only once what it carries is committed
 * (or refused for good). Progress and status run one at a time: mqtt.js sends
 * the PUBACK when `handleMessage` calls back, and takes the next message of
 * this connection after that. Manifests run concurrently (up to
 * MANIFESTS_IN_FLIGHT; beyond that the bus stops reading the connection), in
 * arrival order per device, so verification uses the verify pool's workers and
 * commits group: `handleMessage` calls back at once with a marker that tells
 * mqtt.js to send no PUBACK (`deferAck`), and the bus sends the PUBACK itself
 * after the commit, on the connection the message came on, never on a later one
 * (a redelivery after a reconnect has its own). When the store or the verifier is
 * unavailable the message stays unacknowledged and the client reconnects, so the
 * broker delivers it again; a director killed mid-message leaves it
 * unacknowledged in its session the same way.
 */
import { connect, type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { UpfleetError } from '@upfleet/core';
import { DirectorError, StoreUnavailableError, VerifierUnavailableError } from './errors.ts';
import type { DirectorServices } from './services.ts';
import type { Topics } from './mqtt-topics.ts';
import type { RepoState } from './store.ts';

export interface MqttBusOptions {
  url: string;
  topics: Topics;
  services: DirectorServices;
  log: Logger;
  /** 5 for external brokers (shared subscriptions), 4 for the embedded aedes broker. */
  protocolVersion: 4 | 5;
  /**
   * The broker authenticates devices and holds each to its own topics (the
   * embedded broker), so a manifest on a device's topic comes from that device.
   */
  devicesAuthenticated: boolean;
  /** Stable across restarts, so the broker keeps the session (and queued manifests) meanwhile. */
  clientId: string;
  /** How long an external broker keeps the session of a stopped director (MQTT 5). */
  sessionExpirySeconds?: number;
  username?: string;
  password?: string;
}

/** Default for how long the broker keeps a stopped director's session and its queued messages. */
const SESSION_EXPIRY_S = 86_400;
/** Manifests being verified or committed at once per connection (external brokers cap it lower: Mosquitto at 20). */
const MANIFESTS_IN_FLIGHT = 64;

/**
 * Passed to mqtt.js's handleMessage callback: its QoS 1 handler then sends no PUBACK and
 * takes the next packet (handlers/publish.js: an error skips the PUBACK; the work loop
 * ignores it). The bus acknowledges the message itself once it is committed.
 */
const DEFER_ACK = new Error('PUBACK deferred until the manifest is committed');

/** Errors after which a message must stay unacknowledged, so the broker delivers it again. */
const retryLater = (error: unknown) => error instanceof StoreUnavailableError || error instanceof VerifierUnavailableError;

function noDelay(client: MqttClient): void {
  (client.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
}

export class MqttBus {
  private constructor(
    private readonly client: MqttClient,
    private readonly options: MqttBusOptions,
  ) {}

  /** Connects and subscribes. @throws Error when the broker cannot be reached or refuses */
  static async start(options: MqttBusOptions): Promise<MqttBus> {
    const clientOptions: IClientOptions = {
      protocolVersion: options.protocolVersion,
      clientId: options.clientId,
      clean: false,
      ...(options.protocolVersion === 5 && { properties: { sessionExpiryInterval: options.sessionExpirySeconds ?? SESSION_EXPIRY_S } }),
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...(options.username !== undefined && { username: options.username }),
      ...(options.password !== undefined && { password: options.password }),
    };
    const client = connect(options.url, clientOptions);
    noDelay(client);
    client.on('connect', () => noDelay(client));
    // Handlers go on before the CONNACK: a resumed session delivers queued messages at once.
    const bus = new MqttBus(client, options);
    client.handleMessage = (packet, callback) => {
      if (options.topics.parse(packet.topic)?.kind === 'manifest') return void bus.#onManifest(packet, callback);
      bus.#onMessage(packet.topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload)).then(
        () => callback(),
        (error: Error) => {
          // Not acknowledged: after a reconnect the broker delivers it again (the session is persistent).
          options.log.error({ topic: packet.topic, err: error }, 'MQTT message not processed; reconnecting for redelivery');
          callback(error);
          bus.#reconnect();
        },
      );
    };
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => {
        client.end(true);
        reject(e);
      };
      client.once('error', onError);
      client.once('connect', () => {
        client.off('error', onError);
        resolve();
      });
    });
    client.on('error', (e) => options.log.warn({ err: e }, 'MQTT client error'));
    const { topics } = options;
    await client.subscribeAsync(['manifest', 'progress', 'status'].map((k) => topics.shared(k)), { qos: 1 });
    return bus;
  }

  /** Tells a device its metadata changed (QoS 1). */
  notify(deviceId: string, state: RepoState): void {
    const payload = JSON.stringify({ targetsVersion: state.targetsVersion, timestampVersion: state.timestampVersion });
    this.client.publish(this.options.topics.device(deviceId, 'notify'), payload, { qos: 1 }, (err) => {
      if (err) this.options.log.warn({ deviceId, err }, 'notify not published');
    });
  }

  async close(): Promise<void> {
    this.#closing = true;
    await this.client.endAsync();
  }

  #closing = false;
  #reconnecting = false;

  /** Drops the connection once; mqtt.js reconnects after its reconnect period and the session resumes. */
  #reconnect(): void {
    if (this.#closing || this.#reconnecting) return;
    this.#reconnecting = true;
    this.client.once('connect', () => (this.#reconnecting = false));
    this.client.stream?.destroy();
  }

  /** Handles one message; rejects (leaving it unacknowledged) only when the store is unavailable. */
  async #onMessage(topic: string, payload: Buffer): Promise<void> {
    const { topics, services, log } = this.options;
    const parsed = topics.parse(topic);
    if (!parsed) return;
    const { deviceId, kind } = parsed;
    const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    try {
      if (kind === 'manifest') {
        const result = await services.manifests.ingest(deviceId, bytes, 'mqtt', this.options.devicesAuthenticated);
        this.#ack(deviceId, { counter: result.counter, accepted: true });
      } else if (kind === 'progress') {
        await services.progress(deviceId, JSON.parse(payload.toString('utf8')));
      } else if (kind === 'status') {
        const text = payload.toString('utf8');
        if (text === 'online' || text === 'offline') await services.setOnline(deviceId, text === 'online');
      }
    } catch (error) {
      if (retryLater(error)) throw error;
      if (kind === 'manifest') {
        const e = error instanceof DirectorError ? error : undefined;
        this.#ack(deviceId, {
          counter: counterOf(payload), accepted: false,
          code: e?.code ?? (error instanceof UpfleetError ? error.code : 'ERROR'),
          message: (error as Error).message, ...(e?.fields ?? {}),
        });
      } else {
        log.warn({ deviceId, kind, err: error }, 'MQTT message refused');
      }
    }
  }

  #inFlight = 0;
  #slotFreed: Array<() => void> = [];
  /** The tail of each device's manifests, so they are ingested in arrival order. */
  #deviceTails = new Map<string, Promise<void>>();

  /** A manifest: admitted when a slot is free, processed concurrently, acknowledged after its commit. */
  async #onManifest(packet: IPublishPacket, callback: (error?: Error) => void): Promise<void> {
    // The connection it came on, taken before any wait: a reconnect meanwhile must not get its PUBACK.
    const stream = this.client.stream;
    while (this.#inFlight >= MANIFESTS_IN_FLIGHT) await new Promise<void>((r) => this.#slotFreed.push(r));
    this.#inFlight++;
    const { messageId, qos } = packet;
    // QoS 0 has no PUBACK to defer.
    callback(qos > 0 ? DEFER_ACK : undefined);
    const deviceId = this.options.topics.parse(packet.topic)!.deviceId;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const previous = this.#deviceTails.get(deviceId) ?? Promise.resolve();
    const done = previous.then(() => this.#onMessage(packet.topic, payload)).then(
      () => {
        if (qos > 0 && messageId !== undefined) this.#puback(stream, messageId);
      },
      (error: Error) => {
        this.options.log.error({ topic: packet.topic, err: error }, 'MQTT message not processed; reconnecting for redelivery');
        this.#reconnect();
      },
    );
    this.#deviceTails.set(deviceId, done);
    await done;
    if (this.#deviceTails.get(deviceId) === done) this.#deviceTails.delete(deviceId);
    this.#inFlight--;
    this.#slotFreed.shift()?.();
  }

  /** PUBACK on the connection the message came on; after a reconnect the broker redelivers instead. */
  #puback(stream: MqttClient['stream'], messageId: number): void {
    if (this.client.stream !== stream || !this.client.connected) return;
    const send = (this.client as unknown as { _sendPacket(p: object, cb?: () => void, cbStorePut?: () => void, noStore?: boolean): void })._sendPacket;
    send.call(this.client, { cmd: 'puback', messageId, ...(this.options.protocolVersion === 5 && { reasonCode: 0 }) }, undefined, undefined, true);
  }

  #ack(deviceId: string, body: Record<string, unknown>): void {
    this.client.publish(this.options.topics.device(deviceId, 'ack'), JSON.stringify(body), { qos: 1 });
  }
}

function counterOf(payload: Buffer): number | null {
  try {
    const c = JSON.parse(payload.toString('utf8'))?.signed?.counter;
    return typeof c === 'number' ? c : null;
  } catch {
    return null;
  }
}
