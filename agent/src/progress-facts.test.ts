import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_LIMITS } from './config.ts';
import { KeyValue, openDb } from './db.ts';
import { HttpFetcher } from './fetcher.ts';
import { ImageCache } from './image-cache.ts';
import { IDLE, type State } from './machine/states.ts';
import { ProgressFacts, RECORD_EVERY_MS } from './progress-facts.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const plan = [
  { ecuSerial: 'gw', hardwareId: 'gateway', name: 'a.bin', length: 1000, hashes: { sha256: 'aa'.repeat(32) }, releaseCounter: 1 },
  { ecuSerial: 'brake', hardwareId: 'brake', name: 'b.bin', length: 500, hashes: { sha256: 'bb'.repeat(32) }, releaseCounter: 1 },
];
const state = (name: State['name'], cycleId = 'c1'): State => ({ name, cycle: { ...IDLE.cycle, cycleId, plan } });

function facts() {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-facts-'));
  dirs.push(dir);
  const db = openDb(dir);
  const images = new ImageCache(join(dir, 'images'), new HttpFetcher(DEFAULT_LIMITS), 'http://127.0.0.1:9');
  return { images, facts: new ProgressFacts(images, new KeyValue(db)), db };
}

describe('ProgressFacts', () => {
  it('imageBytesHeld: a verified image counts whole, a partial file its size, capped at the signed length', () => {
    const { images, facts: f, db } = facts();
    assert.equal(f.measure('imageBytesHeld', state('downloading')), 0);
    writeFileSync(images.path(plan[1]!).replace(/\.image$/, '.partial'), Buffer.alloc(200));
    assert.equal(f.measure('imageBytesHeld', state('downloading')), 200);
    writeFileSync(images.path(plan[0]!), Buffer.alloc(1000));
    assert.equal(f.measure('imageBytesHeld', state('downloading')), 1200);
    writeFileSync(images.path(plan[1]!).replace(/\.image$/, '.partial'), Buffer.alloc(900));
    assert.equal(f.measure('imageBytesHeld', state('downloading')), 1500);
    db.close();
  });

  it('ecuBytesHeld: what the ECUs acknowledged in this cycle, written at once for a first or final report, else at most every RECORD_EVERY_MS', () => {
    const { facts: f, db } = facts();
    let now = 0;
    const record = f.ecuBytesRecorder('c1', () => now);
    record('gw', 100, false); // the resume offset the ECU answered: written at once
    assert.equal(f.measure('ecuBytesHeld', state('installing')), 100);
    now += 10;
    record('gw', 300, false); // too soon after the last write
    assert.equal(f.measure('ecuBytesHeld', state('installing')), 100);
    now += RECORD_EVERY_MS;
    record('gw', 400, false);
    assert.equal(f.measure('ecuBytesHeld', state('installing')), 400);
    record('gw', 1000, true); // installed: at once
    record('brake', 50, false); // first report of another ECU: at once
    assert.equal(f.measure('ecuBytesHeld', state('installing')), 1050);
    record('brake', 20, false); // an ECU answering less than recorded does not lower the mark
    assert.equal(f.measure('ecuBytesHeld', state('installing')), 1050);
    assert.equal(f.measure('ecuBytesHeld', state('installing', 'c2')), 0, 'another cycle starts from nothing');
    // A later run of the same cycle keeps what earlier runs recorded.
    f.ecuBytesRecorder('c1', () => now)('brake', 60, false);
    assert.equal(f.measure('ecuBytesHeld', state('installing')), 1060);
    db.close();
  });
});
