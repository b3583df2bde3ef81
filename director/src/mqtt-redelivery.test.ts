/**
 * An MQTT message is acknowledged only once what it carries is committed: a
 * director on PostgreSQL (a database of its own) and the machine's Mosquitto
 * (a topic prefix of its own) receives a manifest while its database refuses
 * connections. It must not acknowledge it (no ack to the device, nothing
 * stored); once the database is back, the broker's redelivery is processed and
 * acknowledged. HTTP meanwhile answers 503 STORE_UNAVAILABLE.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type MqttClient } from 'mqtt';
import pg from 'pg';
import { harness, SimDevice, type Harness } from './testing/harness.ts';
import { createTestDatabase, TEST_POSTGRES, type TestDatabase } from './testing/postgres.ts';

const MOSQUITTO = 'mqtt://127.0.0.1:1883';

describe('MQTT acknowledgement after commit (PostgreSQL, Mosquitto)', () => {
  let db: TestDatabase;
  let h: Harness;
  let device: MqttClient;
  const prefix = `upfleet-test-${randomBytes(4).toString('hex')}/v1`;

  /** Runs SQL as the server's admin (the test's database may be refusing connections). */
  async function asAdmin(sql: string): Promise<void> {
    const client = new pg.Client(TEST_POSTGRES);
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  }

  before(async () => {
    db = await createTestDatabase('redelivery');
    h = await harness({ database: db.url, mqtt: { url: MOSQUITTO, sessionExpirySeconds: 30 }, mqttPrefix: prefix });
  });
  after(async () => {
    await asAdmin(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`).catch(() => {});
    await device?.endAsync();
    await h?.close();
    await db?.drop();
  });

  it('leaves a manifest unacknowledged while the database is down, and records it once it is back', async () => {
    const d = new SimDevice('redeliver-1');
    await h.register(d);
    device = connect(MOSQUITTO, { protocolVersion: 5, clientId: `${prefix}-dev`.replace(/\//g, '_'), clean: true, reconnectPeriod: 0 });
    await new Promise<void>((r) => device.once('connect', () => r()));
    const acks: any[] = [];
    device.on('message', (_t, payload) => acks.push(JSON.parse(payload.toString())));
    await device.subscribeAsync(`${prefix}/devices/${d.id}/ack`, { qos: 1 });

    await asAdmin(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
    await asAdmin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db.name}'`);
    await device.publishAsync(`${prefix}/devices/${d.id}/manifest`, JSON.stringify(d.manifest()), { qos: 1 });
    const down = await h.admin('GET', `/api/v1/admin/devices/${d.id}`);
    assert.deepEqual([down.status, down.body.error.code], [503, 'STORE_UNAVAILABLE']);
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(acks, [], 'no answer while nothing could be stored');

    await asAdmin(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
    const deadline = Date.now() + 20_000;
    while (acks.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(acks, [{ counter: 1, accepted: true }]);
    const manifests = (await h.admin('GET', `/api/v1/admin/devices/${d.id}/manifests`)).body.manifests;
    assert.deepEqual(manifests.map((m: any) => [m.counter, m.via]), [[1, 'mqtt']]);
  });
});
