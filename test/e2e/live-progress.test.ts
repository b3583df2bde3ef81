/**
 * Live progress, end to end: an operator watching the director's admin API
 * sees a download and a flash move while they happen, not only once the cycle
 * is over. The gateway's multi-MB image comes through a loopback proxy that
 * trickles it; the door ECU is flashed over the link emulator at 115200 baud.
 * The test polls GET /admin/assignments/{id} throughout and requires a value
 * strictly between 0 and the total for downloading and for installing, seen
 * while the assignment was still open and the ECU still ran its old image.
 * Once over HTTP (`check --once`), once over MQTT (the `run` daemon), with a
 * proxy in front of the director to tell which carried the progress.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Stack } from '../support/stack.ts';
import { Vehicle } from '../support/vehicle.ts';
import { AttackProxy } from '../support/proxy.ts';

const GATEWAY_BYTES = 3 * 1024 * 1024;
const DOOR_BYTES = 24_000;

interface Seen {
  status: string;
  progress: Record<string, { phase: string; done: number; total: number; at: string }>;
  /** Whether the door ECU ran its new image when the director answered. */
  doorInstalled: boolean;
}

const between = (p: Seen['progress'][string] | undefined, phase: string) => p !== undefined && p.phase === phase && p.done > 0 && p.done < p.total;

for (const transport of ['http', 'mqtt'] as const) describe(`live progress at the director, over ${transport}`, () => {
  let stack: Stack;
  let imageProxy: AttackProxy;
  let directorProxy: AttackProxy;
  let vehicle: Vehicle;
  const deviceId = `live-${transport}`;
  const door = `${deviceId}-door`;
  const gateway = `${deviceId}-gw`;

  before(async () => {
    stack = await Stack.start({ mqtt: transport === 'mqtt' ? 'embedded' : 'none' });
    imageProxy = await new AttackProxy(stack.imageRepo.url).start();
    directorProxy = await new AttackProxy(stack.director.url).start();
    imageProxy.on('/targets/', { kind: 'trickle', bytesPerSecond: 1_500_000 });
    vehicle = await Vehicle.create(stack, {
      deviceId, link: 'emulated', baud: 115200, secondaries: [{ serial: door, hardwareId: 'door-ecu' }],
      imageRepoUrl: imageProxy.url, directorUrl: directorProxy.url, mqtt: transport === 'mqtt', progressIntervalSeconds: 0.5,
    });
  });
  after(async () => {
    await vehicle?.close();
    await imageProxy?.close();
    await directorProxy?.close();
    await stack?.close();
  });

  it('shows downloading and installing progress between 0 and the total before the update completes', async () => {
    for (const [name, hardwareId, size] of [['gateway-2.0.0.bin', 'gateway', GATEWAY_BYTES], ['door-2.0.0.bin', 'door-ecu', DOOR_BYTES]] as const) {
      await stack.publish({ name, data: randomBytes(size), hardwareIds: [hardwareId], version: '2.0.0', releaseCounter: 2 });
    }
    const assignment = await stack.assign(deviceId, [{ ecuSerial: gateway, image: 'gateway-2.0.0.bin' }, { ecuSerial: door, image: 'door-2.0.0.bin' }]);

    const seen: Seen[] = [];
    let done = false;
    const watch = (async () => {
      while (!done) {
        const r = await stack.admin('GET', `/assignments/${assignment.id}`);
        seen.push({ status: r.json.status, progress: r.json.progress, doorInstalled: vehicle.installed()[door]?.filename === 'door-2.0.0.bin' });
        await new Promise((t) => setTimeout(t, 100));
      }
    })();
    const started = Date.now();
    try {
      if (transport === 'http') {
        const out = await vehicle.agent!.checkOnce();
        assert.equal(out.result, 'success', JSON.stringify(out.failure));
      } else {
        const running = vehicle.agent!.run();
        while ((await stack.admin('GET', `/assignments/${assignment.id}`)).json.status !== 'succeeded') {
          assert.ok(Date.now() - started < 60_000, 'the update did not complete within 60 s');
          await new Promise((t) => setTimeout(t, 100));
        }
        await vehicle.agent!.close();
        await running;
      }
    } finally {
      done = true;
      await watch;
    }

    const open = seen.filter((s) => s.status !== 'succeeded' && !s.doorInstalled);
    const downloading = open.find((s) => between(s.progress[gateway], 'downloading'));
    const installing = open.find((s) => between(s.progress[door], 'installing'));
    const statuses = [...new Set(seen.map((s) => s.status))];
    assert.ok(downloading, `no gateway download progress between 0 and the total while open; statuses seen: ${statuses}`);
    assert.equal(downloading.status, 'downloading');
    assert.equal(downloading.progress[gateway]!.total, GATEWAY_BYTES);
    assert.ok(installing, `no door install progress between 0 and the total while open; statuses seen: ${statuses}`);
    assert.equal(installing.status, 'installing');
    assert.ok(seen.indexOf(downloading) < seen.indexOf(installing));

    const final = (await stack.admin('GET', `/assignments/${assignment.id}`)).json;
    assert.equal(final.status, 'succeeded');
    assert.equal(vehicle.installed()[door]?.filename, 'door-2.0.0.bin');
    // Which transport carried the progress: the director's HTTP API saw it only without a broker.
    const httpProgress = directorProxy.requests.filter((r) => r.path.endsWith('/progress')).length;
    if (transport === 'http') assert.ok(httpProgress > 0);
    else assert.equal(httpProgress, 0);
  });

  if (transport === 'http') it('completes the update while the director refuses progress, keeping one waiting event per ECU and phase', async () => {
    for (const [name, hardwareId, size] of [['gateway-3.0.0.bin', 'gateway', GATEWAY_BYTES], ['door-3.0.0.bin', 'door-ecu', DOOR_BYTES]] as const) {
      await stack.publish({ name, data: randomBytes(size), hardwareIds: [hardwareId], version: '3.0.0', releaseCounter: 3 });
    }
    const assignment = await stack.assign(deviceId, [{ ecuSerial: gateway, image: 'gateway-3.0.0.bin' }, { ecuSerial: door, image: 'door-3.0.0.bin' }]);
    directorProxy.on('/progress', { kind: 'serve', status: 503, body: new Uint8Array() });
    const out = await vehicle.agent!.checkOnce();
    assert.equal(out.result, 'success', JSON.stringify(out.failure));
    assert.equal(vehicle.installed()[door]?.filename, 'door-3.0.0.bin');
    assert.ok(directorProxy.requests.some((r) => r.path.endsWith('/progress') && r.status === 503));
    // Two ECUs, two phases: four progress events wait (the latest of each), then the result manifest.
    assert.deepEqual((await vehicle.agent!.status()).outbox, { manifest: 1, progress: 4, rejected: 0 });

    directorProxy.clear();
    const next = await vehicle.agent!.checkOnce();
    assert.equal(next.undelivered, 0);
    const final = (await stack.admin('GET', `/assignments/${assignment.id}`)).json;
    assert.equal(final.status, 'succeeded');
  });
});
