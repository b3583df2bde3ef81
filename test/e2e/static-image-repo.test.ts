/**
 * The image repository behind a stock web server: the image repository server
 * keeps its published tree as plain files (`serve --export`), Debian's nginx
 * serves that directory, and a vehicle whose agent knows only nginx's URL for
 * the image repository updates through it (the real agent cycle: manifest,
 * director, image repository metadata and images from nginx, install, verified
 * manifest). The server itself serves no image to anyone; later publishes and
 * the online re-signing of timestamp reach nginx through the export.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Stack } from '../support/stack.ts';
import { Vehicle } from '../support/vehicle.ts';
import { startNginx, type Nginx } from '../support/nginx.ts';
import { assignDemoFirmware, DEMO_SECONDARIES, publishDemoFirmware } from '../support/firmware.ts';

const tools = (await import('../../scripts/system-tools.mjs' as string)) as { ensureSystemTools(o?: { quiet?: boolean }): string[]; toolPath(c: string): string | undefined };
const nginxBinary = tools.ensureSystemTools({ quiet: true }).includes('nginx') ? undefined : tools.toolPath('nginx');
const skip = nginxBinary ? false : 'nginx is not installed and cannot be (not root, or no apt-get)';

describe('the image repository as static files behind nginx', { skip }, () => {
  let root: string;
  let stack: Stack;
  let nginx: Nginx;
  let vehicle: Vehicle;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'upfleet-static-repo-'));
    chmodSync(root, 0o755); // nginx's workers (nobody, when started by root) read it
    stack = await Stack.start({ mqtt: 'none', imageRepoExportDir: root });
    nginx = await startNginx({ binary: nginxBinary!, root });
    vehicle = await Vehicle.create(stack, {
      deviceId: 'static-car', secondaries: DEMO_SECONDARIES('static-car'), link: 'local', imageRepoUrl: nginx.url,
    });
  });
  after(async () => {
    await vehicle?.close();
    await nginx?.close();
    await stack?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('a vehicle updates every ECU with the image repository served by nginx alone', async () => {
    const fw = await publishDemoFirmware(stack, { sizes: { gateway: 40_000, brake: 6_000, door: 5_000 }, data: (n) => randomBytes(n) });
    await assignDemoFirmware(stack, vehicle, fw);
    const out = await vehicle.agent!.checkOnce();
    assert.equal(out.result, 'success', JSON.stringify(out.failure));
    const view = await stack.device(vehicle.deviceId);
    for (const ecu of view.ecus) assert.equal(ecu.installed?.hashes.sha256, fw.byEcu(vehicle)[ecu.serial]!.sha256, ecu.serial);
    assert.deepEqual(view.assignments.map((a: { status: string }) => a.status), ['succeeded']);

    const log = nginx.accessLog();
    for (const f of fw.images) {
      const path = `/targets/${f.name.includes('/') ? f.name.slice(0, f.name.lastIndexOf('/') + 1) : ''}${f.sha256}.${f.name.split('/').pop()}`;
      assert.ok(log.some((l) => l === `GET ${path} 200` || l === `GET ${path} 206`), `nginx served ${path}:\n${log.join('\n')}`);
    }
    for (const role of ['timestamp.json', 'snapshot.json', 'targets.json', 'supplier-brakes.json']) {
      assert.ok(log.some((l) => new RegExp(`^GET /metadata/(\\d+\\.)?${role.replace('.', '\\.')} 200$`).test(l)), `nginx served ${role}`);
    }
    assert.equal(await stack.imageRepoMetric('upfleet_repo_http_requests_total', { route: 'targets' }), 0, 'the server served no image');
  });

  it('a later publish and the online re-signing of timestamp reach nginx through the export', async () => {
    const served = async (base: string, name: string) => Buffer.from(await (await fetch(`${base}/metadata/${name}`)).arrayBuffer());
    const before = JSON.parse((await served(nginx.url, 'timestamp.json')).toString()).signed.version as number;
    await stack.publish({ name: 'extra-1.0.0.bin', data: randomBytes(1000), hardwareIds: ['gateway'], version: '1.0.0', releaseCounter: 1 });
    assert.deepEqual(await served(nginx.url, 'timestamp.json'), await served(stack.imageRepo.url, 'timestamp.json'));
    stack.clock.advance(20 * 3600 * 1000); // past half of the timestamp's day
    stack.imageRepo.refresh();
    const after = await served(nginx.url, 'timestamp.json');
    assert.deepEqual(after, await served(stack.imageRepo.url, 'timestamp.json'));
    assert.equal(JSON.parse(after.toString()).signed.version, before + 2);
    const headers = (await fetch(`${nginx.url}/metadata/timestamp.json`)).headers;
    assert.equal(headers.get('cache-control'), 'no-cache');
  });
});
