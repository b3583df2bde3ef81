import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { digestHex } from '@upfleet/core';
import { SerialSecondary } from '../../agent/src/secondaries/serial-secondary.ts';
import { createPtyPair, makeUpdateFixture, prng } from './index.ts';

const BIN = fileURLToPath(new URL('../bin/upfleet-sim', import.meta.url));
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('upfleet-sim', () => {
  it('bad arguments exit 2 with usage on stderr', () => {
    const r = spawnSync(BIN, ['ecu', '--port', '/dev/null'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /needs --port PATH and --config FILE/);
    const u = spawnSync(BIN, ['frobnicate'], { encoding: 'utf8' });
    assert.equal(u.status, 2);
  });

  it('a bad config exits 1 with a one-line typed message', () => {
    const dir = mkdtempSync(join(tmpdir(), 'upfleet-sim-cli-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'ecu.json'), JSON.stringify({ ecuSerial: 'x', hardwareId: 'h', directorRoot: 'missing.json' }));
    const r = spawnSync(BIN, ['ecu', '--port', '/dev/null', '--config', join(dir, 'ecu.json')], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr.trim(), /^upfleet-sim ecu: ECU_CONFIG: .*directorRoot names missing\.json/);
  });

  it('serves an ECU on a pty that the serial driver updates, and stops on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'upfleet-sim-cli-'));
    dirs.push(dir);
    const r = prng(3);
    const bytes = new Uint8Array(30_000).map(() => Math.floor(r() * 256));
    const fx = makeUpdateFixture({ now: new Date(), images: [{ ecuSerial: 'cli-ecu', hardwareId: 'hw', name: 'fw.bin', bytes }] });
    writeFileSync(join(dir, 'director-root.json'), fx.directorRoot);
    writeFileSync(join(dir, 'ecu.json'), JSON.stringify({ ecuSerial: 'cli-ecu', hardwareId: 'hw', directorRoot: 'director-root.json', rebootMs: 200 }));
    const pty = await createPtyPair();
    const child = spawn(BIN, ['ecu', '--port', pty.a, '--config', join(dir, 'ecu.json'), '--baud', '921600'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    try {
      for (let i = 0; i < 200 && !out.includes('"serving"'); i++) await new Promise((res) => setTimeout(res, 25));
      const secondary = await SerialSecondary.open({ path: pty.b, baudRate: 921_600, ecuSerial: 'cli-ecu' });
      try {
        assert.equal((await secondary.info()).hardwareId, 'hw');
        await secondary.putMetadata(fx.bundle());
        const hashes = { sha256: digestHex('sha256', bytes) };
        await secondary.install({ name: 'fw.bin', length: bytes.length, hashes, releaseCounter: 0, async *open(o) { yield bytes.subarray(o); } });
        await secondary.activate();
        assert.equal((await secondary.info()).installed?.hashes.sha256, hashes.sha256);
      } finally {
        await secondary.close();
      }
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
      const events = out.trim().split('\n').map((l) => JSON.parse(l) as { event?: string });
      assert.deepEqual(events.map((e) => e.event).filter((e) => ['verified', 'activated', 'stopped'].includes(e!)), ['verified', 'activated', 'stopped']);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await pty.close();
    }
  });
});
