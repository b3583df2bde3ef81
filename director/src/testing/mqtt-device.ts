/**
 * A simulated device's MQTT client for tests: connects (with its token as the
 * password unless `auth: false`), subscribes to its notify and ack topics, and
 * hands out the messages it receives by kind.
 */
import { connect, type MqttClient } from 'mqtt';
import type { SimDevice } from './harness.ts';

export interface DeviceClient {
  client: MqttClient;
  messages: Array<{ topic: string; payload: string }>;
  next(kind: string, timeoutMs?: number): Promise<any>;
}

export async function deviceClient(url: string, prefix: string, d: SimDevice, options: { auth?: boolean; clientId?: string; password?: string; willTopic?: string } = {}): Promise<DeviceClient> {
  const root = `${prefix}/devices/${d.id}`;
  const client = connect(url, {
    protocolVersion: 4, clientId: options.clientId ?? d.id, clean: true, reconnectPeriod: 0, connectTimeout: 5000,
    ...(options.auth !== false && { username: d.id, password: options.password ?? d.token() }),
    will: { topic: options.willTopic ?? `${root}/status`, payload: Buffer.from('offline'), qos: 1, retain: true },
  });
  (client.stream as { setNoDelay?: (b: boolean) => void }).setNoDelay?.(true);
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
    client.once('close', () => reject(new Error('closed before connect')));
  });
  const messages: DeviceClient['messages'] = [];
  const waiters: Array<() => void> = [];
  client.on('message', (topic, payload) => {
    messages.push({ topic, payload: payload.toString() });
    waiters.splice(0).forEach((w) => w());
  });
  await client.subscribeAsync([`${root}/notify`, `${root}/ack`], { qos: 1 });
  return {
    client, messages,
    async next(kind, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = messages.findIndex((m) => m.topic === `${root}/${kind}`);
        if (i >= 0) return JSON.parse(messages.splice(i, 1)[0]!.payload);
        if (Date.now() > deadline) throw new Error(`no ${kind} message for ${d.id}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
    },
  };
}

