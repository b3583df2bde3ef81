/**
 * The embedded MQTT broker (aedes, MQTT 3.1.1) with the director's access rule:
 * - a device connects with username = deviceId, password = its device token,
 *   clientId = deviceId, and only while it is active; its Will may only be its
 *   own status topic;
 * - a device publishes only to its own manifest/progress/status topics and
 *   subscribes only inside its own subtree;
 * - the director's client connects with username DIRECTOR_USERNAME and the admin
 *   token, and may do anything; `$share/<group>/` subscriptions are mapped to
 *   plain ones (aedes has no shared subscriptions; one embedded broker serves
 *   one director process).
 * Sockets run with TCP_NODELAY: MQTT packets are small and Nagle's algorithm
 * adds tens of milliseconds to every QoS 1 round trip.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import type { Logger } from 'pino';
import type { Authenticator } from './auth.ts';
import { DEVICE_PUBLISHES, type Topics } from './mqtt-topics.ts';

export const DIRECTOR_USERNAME = '_director';

export interface EmbeddedBroker {
  url: string;
  port: number;
  close(): Promise<void>;
}

interface ClientIdentity {
  director: boolean;
  deviceId?: string;
}

export interface BrokerOptions {
  port?: number;
  host?: string;
  topics: Topics;
  auth: Authenticator;
  /** Whether a device may connect now (active: not pending approval, not decommissioned). */
  deviceActive: (deviceId: string) => Promise<boolean>;
  log: Logger;
}

export async function startEmbeddedBroker(options: BrokerOptions): Promise<EmbeddedBroker> {
  const { topics, auth, log } = options;
  const identities = new WeakMap<object, ClientIdentity>();
  const broker = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      const secret = password ? password.toString('utf8') : '';
      if (username === DIRECTOR_USERNAME) {
        if (!auth.isAdminSecret(secret)) return done(Object.assign(new Error('bad director credentials'), { returnCode: 4 }), false);
        identities.set(client, { director: true });
        return done(null, true);
      }
      void (async () => {
        const deviceId = await auth.deviceToken(secret);
        if (deviceId !== username || client.id !== deviceId) {
          return done(Object.assign(new Error('username and clientId must be the token device ID'), { returnCode: 4 }), false);
        }
        if (!(await options.deviceActive(deviceId))) return done(Object.assign(new Error(`${deviceId} is not active`), { returnCode: 5 }), false);
        const will = (client as unknown as { _will?: { topic?: string } })._will;
        if (will && will.topic !== topics.device(deviceId, 'status')) {
          return done(Object.assign(new Error('a device Will must be its own status topic'), { returnCode: 5 }), false);
        }
        identities.set(client, { director: false, deviceId });
        return done(null, true);
      })().catch((error) => {
        log.warn({ clientId: client.id, err: error }, 'MQTT authentication refused');
        done(Object.assign(new Error('not authorized'), { returnCode: 5 }), false);
      });
    },
    authorizePublish(client, packet, done) {
      const id = client && identities.get(client);
      if (id?.director) return done(null);
      const parsed = topics.parse(packet.topic);
      if (id?.deviceId && parsed?.deviceId === id.deviceId && (DEVICE_PUBLISHES as readonly string[]).includes(parsed.kind)) return done(null);
      log.warn({ clientId: client?.id, topic: packet.topic }, 'MQTT publish refused');
      done(new Error(`not allowed to publish to ${packet.topic}`));
    },
    authorizeSubscribe(client, sub, done) {
      const id = identities.get(client);
      if (id?.director) {
        // In place: aedes persists the packet's subscription objects for non-clean sessions.
        const shared = /^\$share\/[^/]+\/(.+)$/.exec(sub.topic);
        if (shared) sub.topic = shared[1]!;
        return done(null, sub);
      }
      if (id?.deviceId && sub.topic.startsWith(topics.deviceRoot(id.deviceId))) return done(null, sub);
      log.warn({ clientId: client.id, topic: sub.topic }, 'MQTT subscription refused');
      done(null, null as never);
    },
  });
  const server: Server = createServer({ noDelay: true }, (socket: Socket) => {
    socket.setNoDelay(true);
    broker.handle(socket);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
    });
  } catch (error) {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    throw error;
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `mqtt://${options.host ?? '127.0.0.1'}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        broker.close(() => server.close(() => resolve()));
      }),
  };
}
