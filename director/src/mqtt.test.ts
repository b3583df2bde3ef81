/**
 * The MQTT path: the embedded broker (authentication and the per-device
 * access rule, notify, manifests and acks, progress, status with Last Will) and
 * the machine's Mosquitto (shared subscriptions split manifests between two
 * directors). Every test uses its own topic prefix.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { utf8 } from '@upfleet/core';
import { harness, ADMIN_TOKEN, PROVISIONING_TOKEN, SimDevice, type Harness } from './testing/harness.ts';
import { deviceClient, type DeviceClient } from './testing/mqtt-device.ts';
import { startDirector, type RunningDirector, type StartOptions } from './director.ts';
import { until } from '../../test/support/until.ts';

const MOSQUITTO = 'mqtt://127.0.0.1:1883';
/** The shared broker forgets these tests' director sessions soon after they end. */
const MOSQUITTO_MQTT = { url: MOSQUITTO, sessionExpirySeconds: 30 };

describe('MQTT with the embedded broker', () => {
  let h: Harness;
  const prefix = `t${randomBytes(4).toString('hex')}/v1`;
  const clients: MqttClient[] = [];
  before(async () => {
    h = await harness({ mqtt: 'embedded', mqttPrefix: prefix });
    h.imageRepo.addImage('brake-5.bin', utf8('brake five'), ['brake'], 5);
  });
  after(async () => {
    for (const c of clients) c.end(true);
    await h.close();
  });

  it('carries manifests with acks, notify on metadata change, progress and status', async () => {
    const d = new SimDevice('mq-1');
    await h.register(d);
    const dc = await deviceClient(h.director.mqttUrl!, prefix, d);
    clients.push(dc.client);
    await dc.client.publishAsync(`${prefix}/devices/${d.id}/status`, 'online', { qos: 1, retain: true });
    await until('online', async () => (await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body.online === true, 5000, 25);

    await dc.client.publishAsync(`${prefix}/devices/${d.id}/manifest`, JSON.stringify(d.manifest()), { qos: 1 });
    assert.deepEqual(await dc.next('ack'), { counter: 1, accepted: true });
    await dc.client.publishAsync(`${prefix}/devices/${d.id}/manifest`, JSON.stringify(d.manifest({ counter: 1 })), { qos: 1 });
    const refused = await dc.next('ack');
    assert.deepEqual([refused.accepted, refused.code, refused.lastCounter], [false, 'MANIFEST_REPLAY', 1]);
    // The embedded broker authenticated the sender: the refusal is in the device's security event log.
    const events = (await h.admin('GET', `/api/v1/admin/devices/${d.id}/events`)).body.events;
    assert.deepEqual(events.map((e: any) => [e.kind, e.code, /via mqtt/.test(e.detail)]), [['manifest_refused', 'MANIFEST_REPLAY', true]]);

    const a = (await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image: 'brake-5.bin' }] })).body;
    const notify = await dc.next('notify');
    assert.equal(notify.targetsVersion, a.targetsVersion);

    await dc.client.publishAsync(`${prefix}/devices/${d.id}/progress`, JSON.stringify({ state: 'downloading' }), { qos: 1 });
    await until('progress', async () => (await h.admin('GET', `/api/v1/admin/assignments/${a.id}`)).body.status === 'downloading', 5000, 25);

    // Last Will: an abrupt disconnect publishes the retained offline status.
    dc.client.stream.destroy();
    await until('offline', async () => (await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body.online === false, 5000, 25);
  });

  it('refuses bad credentials, a clientId of another device, a Will on another topic, a decommissioned device', async () => {
    const d = new SimDevice('mq-2');
    await h.register(d);
    const other = new SimDevice('mq-3');
    await h.register(other);
    await assert.rejects(deviceClient(h.director.mqttUrl!, prefix, d, { password: other.token() }));
    await assert.rejects(deviceClient(h.director.mqttUrl!, prefix, d, { auth: false }));
    await assert.rejects(deviceClient(h.director.mqttUrl!, prefix, d, { clientId: other.id }));
    await assert.rejects(deviceClient(h.director.mqttUrl!, prefix, d, { willTopic: `${prefix}/devices/${other.id}/status` }));
    const c = await deviceClient(h.director.mqttUrl!, prefix, d); // the same device, properly configured
    await c.client.endAsync();
    await h.admin('POST', `/api/v1/admin/devices/${d.id}/decommission`);
    await assert.rejects(deviceClient(h.director.mqttUrl!, prefix, d));
  });

  it('lets a device publish and subscribe only to its own topics', async () => {
    const a = new SimDevice('mq-4');
    const b = new SimDevice('mq-5');
    await h.register(a);
    await h.register(b);
    const ca = await deviceClient(h.director.mqttUrl!, prefix, a);
    const cb = await deviceClient(h.director.mqttUrl!, prefix, b);
    clients.push(ca.client, cb.client);
    const refusedSuback = (e: unknown) => ((e as { packet?: { granted?: number[] } }).packet?.granted ?? [])[0] === 128;
    await assert.rejects(ca.client.subscribeAsync(`${prefix}/devices/${b.id}/notify`, { qos: 1 }), refusedSuback);
    await assert.rejects(ca.client.subscribeAsync(`${prefix}/devices/+/notify`, { qos: 1 }), refusedSuback);
    // A publish to another device's manifest topic closes the connection and reaches nobody.
    const closed = new Promise<void>((r) => ca.client.once('close', () => r()));
    ca.client.publish(`${prefix}/devices/${b.id}/manifest`, JSON.stringify(b.manifest()), { qos: 1 });
    await closed;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await h.admin('GET', `/api/v1/admin/devices/${b.id}`)).body.manifestCounter, -1);
    assert.equal(cb.messages.length, 0);
    // Nor may a device write to the director's own topics (its notify).
    const closed2 = new Promise<void>((r) => cb.client.once('close', () => r()));
    cb.client.publish(`${prefix}/devices/${b.id}/notify`, '{"targetsVersion":99}', { qos: 1 });
    await closed2;
  });
});

describe('MQTT with Mosquitto (127.0.0.1:1883)', () => {
  let h: Harness;
  let second: RunningDirector;
  let secondOptions: StartOptions;
  const prefix = `upfleet-test-${randomBytes(4).toString('hex')}/v1`;
  const clients: MqttClient[] = [];
  before(async () => {
    h = await harness({ mqtt: MOSQUITTO_MQTT, mqttPrefix: prefix });
    h.imageRepo.addImage('brake-6.bin', utf8('brake six'), ['brake'], 6);
    secondOptions = {
      dir: h.dir, port: 0, imageRepoUrl: h.imageRepo.url, imageRepoRoot: h.imageRepo.rootBytes, adminToken: ADMIN_TOKEN,
      provisioningToken: PROVISIONING_TOKEN, onlinePassphrase: 'online-pass', mqtt: MOSQUITTO_MQTT, mqttPrefix: prefix,
      mqttClientId: `_director_second_${randomBytes(4).toString('hex')}`, logger: pino({ level: 'silent' }),
    };
    second = await startDirector(secondOptions);
  });
  after(async () => {
    for (const c of clients) {
      // Clear the retained status this test left on the shared broker.
      await c.publishAsync(c.options.will!.topic, '', { retain: true, qos: 1 }).catch(() => {});
      await c.endAsync(); // a clean DISCONNECT: no Will left behind
    }
    await second.close();
    await h.close();
  });

  it('delivers notify and acks, and two directors share the manifests', async () => {
    const devices: SimDevice[] = [];
    const dcs: DeviceClient[] = [];
    for (let i = 0; i < 6; i++) {
      const d = new SimDevice(`mos-${i}`);
      await h.register(d);
      const dc = await deviceClient(MOSQUITTO, prefix, d, { auth: false });
      clients.push(dc.client);
      devices.push(d);
      dcs.push(dc);
    }
    const rounds = 4;
    for (let r = 0; r < rounds; r++) {
      await Promise.all(devices.map((d, i) => dcs[i]!.client.publishAsync(`${prefix}/devices/${d.id}/manifest`, JSON.stringify(d.manifest()), { qos: 1 })));
      for (const dc of dcs) assert.equal((await dc.next('ack')).accepted, true);
    }
    await new Promise((r) => setTimeout(r, 200));
    // Shared subscription: each manifest handled exactly once (no second, refused, ack).
    assert.equal(dcs.reduce((n, dc) => n + dc.messages.filter((m) => m.topic.endsWith('/ack')).length, 0), 0);
    const m1 = h.director.services.metrics.manifestsAccepted;
    const m2 = second.services.metrics.manifestsAccepted;
    const counts = [(await m1.get()).values[0]?.value ?? 0, (await m2.get()).values[0]?.value ?? 0];
    assert.equal(counts[0]! + counts[1]!, devices.length * rounds);
    assert.ok(counts[0]! > 0 && counts[1]! > 0, `both directors took a share: ${counts}`);

    const d = devices[0]!;
    const a = (await h.admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image: 'brake-6.bin' }] })).body;
    assert.equal((await dcs[0]!.next('notify')).targetsVersion, a.targetsVersion);

    // Anyone may publish on a plain broker: a refusal is acked and counted, not written to the device's log.
    await dcs[1]!.client.publishAsync(`${prefix}/devices/${devices[1]!.id}/manifest`, JSON.stringify(devices[1]!.manifest({ counter: 1 })), { qos: 1 });
    assert.equal((await dcs[1]!.next('ack')).code, 'MANIFEST_REPLAY');
    assert.deepEqual((await h.admin('GET', `/api/v1/admin/devices/${devices[1]!.id}/events`)).body.events, []);
  });

  it('keeps manifests sent while the directors are down', async () => {
    const d = new SimDevice('mos-down');
    await h.register(d);
    const dc = await deviceClient(MOSQUITTO, prefix, d, { auth: false });
    clients.push(dc.client);
    await second.close();
    await h.director.close();
    await dc.client.publishAsync(`${prefix}/devices/${d.id}/manifest`, JSON.stringify(d.manifest()), { qos: 1 });
    await h.restart();
    second = await startDirector(secondOptions);
    assert.deepEqual(await dc.next('ack', 10_000), { counter: 1, accepted: true });
    assert.equal((await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body.manifestCounter, 1);
  });
});
