/**
 * Test plumbing for several director processes: `serve --processes 3` as a child
 * process (with an image repository and a director directory of its own), HTTP
 * calls that survive a dying worker, and the concurrent-changes check shared by
 * the PostgreSQL and SQLite runs (multi-process*.test.ts).
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { utf8, type TargetFile } from '@upfleet/core';
import { ADMIN_TOKEN, directorDir, ImageRepoServer, PROVISIONING_TOKEN, SimDevice } from './harness.ts';
import { startDirectorChild, type DirectorChild } from './director-child.ts';

export const PROCESSES = 3;

export interface Cluster {
  director: DirectorChild;
  images: Record<string, TargetFile>;
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  register(d: SimDevice, tags?: string[]): Promise<void>;
  metadata(d: SimDevice, file: string): Promise<any>;
  close(): Promise<void>;
}

/** An image repository, and `serve --processes 3` on `database` with `mqtt` options (and `env`), in a director directory of its own. */
export async function startCluster(database: string, mqtt: string[], env: Record<string, string> = {}): Promise<Cluster> {
  const dir = await directorDir();
  const repo = await new ImageRepoServer().start();
  const images = {
    'brake-2.bin': repo.addImage('brake-2.bin', utf8('brake two'), ['brake'], 2),
    'brake-3.bin': repo.addImage('brake-3.bin', utf8('brake three'), ['brake'], 3),
  };
  writeFileSync(join(dir, 'image-root.json'), repo.rootBytes);
  let director: DirectorChild;
  try {
    director = await startDirectorChild([
      '--dir', dir, '--port', '0', '--image-repo', repo.url, '--image-repo-root', join(dir, 'image-root.json'),
      '--database', database, '--processes', String(PROCESSES), ...mqtt,
      '--admin-token', ADMIN_TOKEN, '--provisioning-token', PROVISIONING_TOKEN,
    ], { UPFLEET_ONLINE_PASSPHRASE: 'online-pass', ...env });
  } catch (error) {
    await repo.close();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  /** One HTTP call to the cluster, tried again on a broken connection (a worker that died). */
  async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await fetch(`${director.url}${path}`, {
          method, headers: { 'content-type': 'application/json', ...headers },
          ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
        });
        const text = await res.text();
        return { status: res.status, body: text ? JSON.parse(text) : undefined };
      } catch (error) {
        if (attempt >= 20) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  const c: Cluster = {
    director, images, call,
    admin: (method, path, body) => call(method, path, body, { authorization: `Bearer ${ADMIN_TOKEN}` }),
    async register(d, tags = []) {
      const r = await call('POST', `/api/v1/devices/${d.id}/register`, d.registration(tags), { authorization: `Bearer ${PROVISIONING_TOKEN}` });
      assert.equal(r.status, 201, JSON.stringify(r.body));
    },
    async metadata(d, file) {
      const r = await call('GET', `/api/v1/devices/${d.id}/metadata/${file}`, undefined, d.headers());
      assert.equal(r.status, 200, `${file}: ${JSON.stringify(r.body)}`);
      return r.body.signed;
    },
    async close() {
      await director.stop();
      await repo.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return c;
}

/**
 * Six assignments and six manifests per device at once, spread over the processes: no
 * targets version is signed twice, the newest assignment is the open one and what the
 * device's metadata chain names, and each accepted manifest is recorded once.
 */
export async function concurrentChanges(c: Cluster, label: string): Promise<void> {
  const { admin, call, metadata } = c;
  const devices = Array.from({ length: 3 }, (_, i) => new SimDevice(`${label}-${i}`));
  for (const d of devices) await c.register(d);
  const created: Array<{ device: SimDevice; status: number; body: any }> = [];
  const sent: Array<{ device: SimDevice; counter: number; status: number }> = [];
  await Promise.all(devices.flatMap((d) => [
    ...Array.from({ length: 6 }, async (_, i) => {
      const image = i % 2 ? 'brake-3.bin' : 'brake-2.bin';
      const r = await admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image }] });
      created.push({ device: d, ...r });
    }),
    ...Array.from({ length: 6 }, async () => {
      const m = d.manifest();
      const r = await call('POST', `/api/v1/devices/${d.id}/manifest`, m, d.headers());
      sent.push({ device: d, counter: m.signed.counter, status: r.status });
    }),
  ]));

  for (const d of devices) {
    const mine = created.filter((c) => c.device === d);
    assert.ok(mine.every((c) => c.status === 201), JSON.stringify(mine.map((c) => c.body)));
    const versions = mine.map((c) => c.body.targetsVersion as number);
    assert.equal(new Set(versions).size, versions.length, `no targets version signed twice for ${d.id}: ${versions}`);
    // The newest assignment is the one left open, and the device's current targets list its image.
    const view = (await admin('GET', `/api/v1/admin/devices/${d.id}`)).body;
    const open = view.assignments.filter((a: any) => ['pending', 'downloading', 'installing'].includes(a.status));
    const newest = mine.reduce((a, b) => (a.body.targetsVersion > b.body.targetsVersion ? a : b)).body;
    assert.deepEqual(open.map((a: any) => a.id), [newest.id]);
    assert.ok(view.metadata.targetsVersion >= Math.max(...versions));
    assert.deepEqual(Object.keys(view.targets), [newest.items[0].image]);
    // The chain the device sees is one consistent version: timestamp -> snapshot -> targets.
    const timestamp = await metadata(d, 'timestamp.json');
    const snapshot = await metadata(d, `${timestamp.meta['snapshot.json'].version}.snapshot.json`);
    assert.equal(snapshot.meta['targets.json'].version, view.metadata.targetsVersion);
    const targets = await metadata(d, `${view.metadata.targetsVersion}.targets.json`);
    assert.deepEqual(Object.keys(targets.targets), [newest.items[0].image]);

    const accepted = sent.filter((s) => s.device === d && s.status === 200).map((s) => s.counter);
    assert.ok(sent.filter((s) => s.device === d).every((s) => s.status === 200 || s.status === 409), 'accepted or a replay');
    const recorded = (await admin('GET', `/api/v1/admin/devices/${d.id}/manifests?limit=1000`)).body.manifests.map((m: any) => m.counter);
    assert.deepEqual([...recorded].sort((a, b) => a - b), [...accepted].sort((a, b) => a - b), 'each accepted manifest recorded once');
    assert.equal(view.manifestCounter, Math.max(...accepted));
  }
}
