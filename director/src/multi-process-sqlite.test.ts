/**
 * Several director processes on one SQLite file (`serve --processes 3 --no-mqtt`):
 * every transaction takes the file's write lock first (BEGIN IMMEDIATE), so
 * concurrent changes over the processes keep each device's targets versions
 * strictly increasing and count every accepted manifest once.
 */
import { after, before, describe, it } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { concurrentChanges, startCluster, type Cluster } from './testing/cluster.ts';

describe('several director processes on one SQLite file', () => {
  let dir: string;
  let c: Cluster;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'upfleet-cluster-sqlite-'));
    c = await startCluster(join(dir, 'director.db'), ['--no-mqtt']);
  });
  after(async () => {
    await c?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps each device targets versions strictly increasing under concurrent assignments and manifests', () => concurrentChanges(c, 'lite'));
});
