/**
 * Reconnect backoff: the policy alone (deterministic random source), then the
 * real agent against a broker / director address nothing listens on, which
 * comes up later at the same address.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Aedes } from 'aedes';
import { Ed25519Signer, RepositoryBuilder, encryptKeyFile } from '@upfleet/core';
import { createAgent } from './agent.ts';
import { parseConfig } from './config.ts';
import { backoffDelay, Reconnect, RECONNECT_POLICY, type BackoffPolicy } from './reconnect.ts';
import { BuilderDirector } from './testing/builder-director.ts';
import { serveFiles } from './testing/static-server.ts';
import { freePort, listenLoopback } from '../../test/support/loopback.ts';
import { until } from '../../test/support/until.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

interface Line { level: number; time: number; msg: string; link?: string; attempt?: number; outageMs?: number }

/** A pino logger at debug level whose lines land in `lines`. */
function capture(): { logger: pino.Logger; lines: Line[] } {
  const lines: Line[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Line);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

const WARN = 40;
const INFO = 30;
const DEBUG = 20;

const FAST: BackoffPolicy = { baseMs: 100, factor: 2, capMs: 800 };

describe('backoff policy', () => {
  it('doubles from the base up to the cap, scaled by the random source (full jitter)', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(FAST, n, () => 0.999999)), [99, 199, 399, 799, 799, 799]);
    assert.deepEqual([0, 1, 2, 3].map((n) => backoffDelay(FAST, n, () => 0.5)), [50, 100, 200, 400]);
    assert.equal(backoffDelay(FAST, 3, () => 0), 0);
    // The default: 1 s doubling, capped at 5 minutes.
    assert.equal(backoffDelay(RECONNECT_POLICY, 0, () => 0.5), 500);
    assert.equal(backoffDelay(RECONNECT_POLICY, 30, () => 0.5), 150_000);
  });

  it('warns once per outage, then debug; the recovery logs its length once and resets the backoff', () => {
    const { logger, lines } = capture();
    let clock = 1000;
    const r = new Reconnect({ link: 'director', log: logger, policy: FAST, random: () => 0.5, now: () => clock });
    assert.deepEqual([r.failed(new Error('ECONNREFUSED')), r.failed(new Error('ECONNREFUSED')), r.failed(new Error('EHOSTUNREACH'))], [50, 100, 200]);
    assert.equal(r.down, true);
    clock = 4500;
    r.succeeded();
    r.succeeded(); // a second success is no new recovery
    assert.deepEqual(lines.map((l) => [l.level, l.msg]), [
      [WARN, 'director unreachable; retrying with backoff'],
      [DEBUG, 'director still unreachable'],
      [DEBUG, 'director still unreachable'],
      [INFO, 'director reachable again after 3.5 s'],
    ]);
    assert.equal((lines[0] as unknown as { error: string }).error, 'ECONNREFUSED');
    assert.equal(lines[3]!.outageMs, 3500);
    assert.equal(r.down, false);
    // The next outage starts again from the base, with its own warning.
    assert.equal(r.failed(new Error('ECONNREFUSED')), 50);
    assert.equal(lines.filter((l) => l.level === WARN).length, 2);
  });
});

describe('agent reconnects with backoff (real sockets)', () => {
  it('MQTT: attempts space out, one warning for the outage, connects once the broker is up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'upfleet-reconnect-'));
    dirs.push(dir);
    const port = await freePort();
    writeFileSync(join(dir, 'primary.key'), encryptKeyFile(Ed25519Signer.generate(), 'pw'));
    const config = parseConfig({
      deviceId: 'car-r', directorUrl: 'http://127.0.0.1:9', imageRepoUrl: 'http://127.0.0.1:9', mqttUrl: `mqtt://127.0.0.1:${port}`,
      storageDir: join(dir, 'var'), keyPath: join(dir, 'primary.key'), pollIntervalSeconds: 3600,
      provisioning: { directorRoot: join(dir, 'none.json'), imageRepoRoot: join(dir, 'none.json') },
      ecus: { primary: { serial: 'gw-1', hardwareId: 'gw', installCommand: 'true' } },
    });
    const { logger, lines } = capture();
    const agent = await createAgent(config, { passphrase: 'pw', logger, secondaries: [], reconnect: { policy: FAST, random: () => 0.999 } });
    const running = agent.run();
    let server: Server | undefined;
    let broker: Aedes | undefined;
    try {
      const mqttLines = () => lines.filter((l) => l.link === 'mqtt broker');
      await until('five failed attempts', () => mqttLines().length >= 5);
      const fails = mqttLines();
      // Each attempt waited its backoff delay (99, 199, 399, 799 ms with this random source), not a fixed second.
      const gaps = fails.slice(1, 5).map((l, i) => l.time - fails[i]!.time);
      const delays = fails.slice(0, 4).map((l) => (l as unknown as { delayMs: number }).delayMs);
      assert.deepEqual(delays, [99, 199, 399, 799]);
      gaps.forEach((g, i) => assert.ok(g >= delays[i]! - 5, `gap ${i} ${g} ms < delay ${delays[i]} ms`));
      assert.ok(gaps[3]! > gaps[0]! * 3, `gaps grow: ${gaps.join(', ')}`);

      broker = await Aedes.createBroker();
      server = createServer(broker.handle);
      await listenLoopback(server, port);
      await until('the connection', () => lines.some((l) => l.msg === 'mqtt connected'));
      const outage = mqttLines();
      assert.equal(outage.filter((l) => l.level === WARN).length, 1, 'exactly one warning for the outage');
      assert.equal(outage[0]!.level, WARN);
      assert.match((outage[0] as unknown as { error: string }).error, /ECONNREFUSED/);
      const recovered = outage.filter((l) => l.level === INFO);
      assert.equal(recovered.length, 1);
      assert.ok(recovered[0]!.outageMs! >= 1400, `outage length ${recovered[0]!.outageMs}`);
      assert.equal(lines.filter((l) => l.level >= WARN && l.link === 'mqtt broker').length, 1);
    } finally {
      await agent.close();
      await running;
      server?.close();
      await broker?.close();
    }
  });

  it('HTTP: cycles that cannot reach the director back off, warn once, and recover when it is back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'upfleet-reconnect-'));
    dirs.push(dir);
    const now = new Date();
    const images = new RepositoryBuilder({ now });
    images.commit();
    const imageServer = await serveFiles(() => images.files);
    const director = new BuilderDirector('car-h', now);
    await director.start();
    writeFileSync(join(dir, 'director-root.json'), director.repo.bytes('root'));
    writeFileSync(join(dir, 'image-root.json'), images.bytes('root'));
    const config = parseConfig({
      deviceId: 'car-h', directorUrl: director.url, imageRepoUrl: imageServer.url,
      storageDir: join(dir, 'var'), keyPath: join(dir, 'var', 'primary.key'), pollIntervalSeconds: 3600,
      provisioning: { directorRoot: join(dir, 'director-root.json'), imageRepoRoot: join(dir, 'image-root.json'), token: 'prov-token' },
      ecus: { primary: { serial: 'gw-1', hardwareId: 'gw', installCommand: 'true' } },
    });
    const { logger, lines } = capture();
    const agent = await createAgent(config, { passphrase: 'pw', logger, secondaries: [], reconnect: { policy: FAST, random: () => 0.999 } });
    await agent.provision();
    const port = Number(new URL(director.url).port);
    await director.close();
    const running = agent.run();
    try {
      const cycles = () => lines.filter((l) => l.msg === 'cycle done');
      await until('five cycles', () => cycles().length >= 5);
      const c = cycles();
      const gaps = c.slice(1, 5).map((l, i) => l.time - c[i]!.time);
      gaps.forEach((g, i) => assert.ok(g >= [99, 199, 399, 799][i]! - 5, `gap ${i}: ${gaps.join(', ')}`));
      await director.start(port);
      await until('recovery', () => lines.some((l) => l.link === 'director' && l.level === INFO));
      const link = lines.filter((l) => l.link === 'director');
      assert.equal(link.filter((l) => l.level === WARN).length, 1, 'exactly one warning for the outage');
      assert.equal(lines.filter((l) => l.level === WARN).length, 1, 'no other warnings (the outbox retries are part of the outage)');
      assert.ok(director.manifests.length >= 1, 'the queued manifests reached the director');
    } finally {
      await agent.close();
      await running;
      await director.close();
      await imageServer.close();
    }
  });
});
