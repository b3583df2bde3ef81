/**
 * The outbox across outages and restarts: over HTTP to a loopback director
 * stand-in that fails and then recovers, and over MQTT to an in-process
 * broker (aedes) that goes away and comes back on the same port.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { Ed25519Signer } from '@upfleet/core';
import { openDb } from './db.ts';
import { DeviceTokens } from './device-token.ts';
import { DirectorClient } from './director-client.ts';
import { DEFAULT_LIMITS } from './config.ts';
import { HttpFetcher } from './fetcher.ts';
import { MqttChannel } from './mqtt-channel.ts';
import { Outbox } from './outbox.ts';
import { listenLoopback } from '../../test/support/loopback.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'upfleet-outbox-'));
  dirs.push(d);
  return d;
};

describe('Outbox over HTTP', () => {
  it('keeps messages through a director outage and a restart, then delivers them in order', async () => {
    const dir = tempDir();
    let up = false;
    const received: Array<{ path: string; body: string; auth: string }> = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (!up) return void res.writeHead(503).end();
        received.push({ path: req.url!, body, auth: req.headers.authorization ?? '' });
        if (body.includes('"refuse"')) return void res.writeHead(422).end('{"error":{"code":"BAD"}}');
        if (body.includes('"replayed"')) return void res.writeHead(409).end('{"error":{"code":"MANIFEST_REPLAY","lastCounter":9}}');
        res.writeHead(req.url!.endsWith('/progress') ? 204 : 200).end('{}');
      });
    });
    const { url, close } = await listenLoopback(server);
    const tokens = new DeviceTokens('car-9', Ed25519Signer.generate());
    const client = new DirectorClient(url, 'car-9', tokens, new HttpFetcher(DEFAULT_LIMITS));
    try {
      let db = openDb(dir);
      let outbox = new Outbox(db);
      outbox.enqueue('manifest', { signed: { counter: 1 } });
      outbox.enqueue('progress', { ecuSerial: 'e', state: 'downloading', done: 1, total: 2 });
      outbox.enqueue('manifest', { signed: { counter: 2 }, refuse: true });
      outbox.enqueue('manifest', { signed: { counter: 3 }, replayed: true });
      const first = await outbox.flush((row) => client.deliver(row));
      assert.equal(first.acked, 0);
      assert.match(first.stoppedBy!, /HTTP 503/);
      db.close(); // the agent restarts during the outage

      db = openDb(dir);
      outbox = new Outbox(db);
      assert.deepEqual(outbox.counts(), { manifest: 3, progress: 1, rejected: 0 });
      up = true;
      const second = await outbox.flush((row) => client.deliver(row));
      assert.equal(second.acked, 3);
      assert.deepEqual(outbox.counts(), { manifest: 0, progress: 0, rejected: 1 });
      assert.deepEqual(received.map((r) => r.path), [
        '/api/v1/devices/car-9/manifest',
        '/api/v1/devices/car-9/progress',
        '/api/v1/devices/car-9/manifest',
        '/api/v1/devices/car-9/manifest',
      ]);
      assert.match(received[0]!.auth, /^UpfleetDevice car-9:\d+:[0-9a-f]{128}$/);
      db.close();
    } finally {
      await close();
    }
  });
});

describe('Outbox.enqueueLatest', () => {
  it('keeps only the latest progress per ECU and phase while the director is away, in queue order', async () => {
    const dir = tempDir();
    let up = false;
    const received: string[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (!up) return void res.writeHead(503).end();
        received.push(body);
        res.writeHead(req.url!.endsWith('/progress') ? 204 : 200).end('{}');
      });
    });
    const { url, close } = await listenLoopback(server);
    const client = new DirectorClient(url, 'car-9',
      new DeviceTokens('car-9', Ed25519Signer.generate()), new HttpFetcher(DEFAULT_LIMITS));
    const db = openDb(dir);
    try {
      const outbox = new Outbox(db);
      const progress = (ecuSerial: string, state: string, done: number) =>
        outbox.enqueueLatest('progress', `${ecuSerial}/${state}`, { ecuSerial, state, done, total: 1000 });
      outbox.enqueue('manifest', { signed: { counter: 1 } });
      // An hour offline: a thousand progress events for two ECUs and both phases.
      for (let done = 0; done < 1000; done += 4) {
        progress('brake', 'downloading', done);
        progress('door', 'downloading', done);
        assert.match((await outbox.flush((row) => client.deliver(row))).stoppedBy!, /HTTP 503/);
      }
      for (let done = 0; done <= 1000; done += 4) progress('brake', 'installing', done);
      assert.deepEqual(outbox.counts(), { manifest: 1, progress: 3, rejected: 0 });

      up = true;
      assert.equal((await outbox.flush((row) => client.deliver(row))).acked, 4);
      assert.deepEqual(received.map((b) => JSON.parse(b)), [
        { signed: { counter: 1 } },
        { ecuSerial: 'brake', state: 'downloading', done: 996, total: 1000 },
        { ecuSerial: 'door', state: 'downloading', done: 996, total: 1000 },
        { ecuSerial: 'brake', state: 'installing', done: 1000, total: 1000 },
      ]);
    } finally {
      db.close();
      await close();
    }
  });

  it('opens an outbox written before progress was coalesced and keeps its messages', () => {
    const dir = tempDir();
    const old = new Database(join(dir, 'agent.db'));
    old.exec('CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0)');
    old.prepare("INSERT INTO outbox (kind, payload, created_at) VALUES ('progress', '{\"n\":1}', 'then')").run();
    old.close();
    const db = openDb(dir);
    try {
      const outbox = new Outbox(db);
      outbox.enqueueLatest('progress', 'brake/downloading', { n: 2 });
      outbox.enqueueLatest('progress', 'brake/downloading', { n: 3 });
      assert.deepEqual(outbox.pending().map((r) => r.payload), ['{"n":1}', '{"n":3}']);
    } finally {
      db.close();
    }
  });
});

async function startBroker(port = 0): Promise<{ port: number; messages: Array<{ topic: string; payload: string }>; close(): Promise<void> }> {
  const broker = await Aedes.createBroker();
  const messages: Array<{ topic: string; payload: string }> = [];
  broker.on('publish', (packet, client) => {
    if (client) messages.push({ topic: packet.topic, payload: packet.payload.toString() });
  });
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    broker.handle(s);
  });
  const listening = await listenLoopback(server, port);
  return {
    port: listening.port,
    messages,
    async close() {
      for (const s of sockets) s.destroy();
      await listening.close();
      await new Promise<void>((r) => broker.close(() => r()));
    },
  };
}

describe('Outbox over MQTT', () => {
  it('waits for PUBACK, keeps messages while the broker is down, delivers after it returns', async () => {
    const dir = tempDir();
    let broker = await startBroker();
    const port = broker.port;
    const notified: unknown[] = [];
    const channel = new MqttChannel({
      url: `mqtt://127.0.0.1:${port}`,
      deviceId: 'car-7',
      prefix: 'test-agent-outbox',
      tokens: new DeviceTokens('car-7', Ed25519Signer.generate()),
      onNotify: (p) => notified.push(p),
    });
    const db = openDb(dir);
    const outbox = new Outbox(db);
    try {
      await waitFor(() => channel.connected);
      outbox.enqueue('manifest', { n: 1 });
      assert.equal((await outbox.flush((r) => channel.deliver(r))).acked, 1);
      assert.ok(broker.messages.some((m) => m.topic === 'test-agent-outbox/devices/car-7/manifest' && m.payload === '{"n":1}'));

      // notify wakes the agent
      const director = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'director-test' });
      await director.publishAsync('test-agent-outbox/devices/car-7/notify', '{"targetsVersion":3}', { qos: 1 });
      await waitFor(() => notified.length === 1);
      assert.deepEqual(notified[0], { targetsVersion: 3 });
      await director.endAsync(true);

      await broker.close();
      await waitFor(() => !channel.connected);
      outbox.enqueue('manifest', { n: 2 });
      outbox.enqueue('progress', { n: 3 });
      const during = await outbox.flush((r) => channel.deliver(r));
      assert.equal(during.acked, 0);
      assert.deepEqual(outbox.counts(), { manifest: 1, progress: 1, rejected: 0 });

      broker = await startBroker(port);
      await waitFor(() => channel.connected, 10_000);
      assert.equal((await outbox.flush((r) => channel.deliver(r))).acked, 2);
      assert.deepEqual(
        broker.messages.filter((m) => !m.topic.endsWith('/status')).map((m) => m.payload),
        ['{"n":2}', '{"n":3}'],
      );
    } finally {
      await channel.close();
      await broker.close();
      db.close();
    }
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
