/**
 * How `upfleet-agent run` stops, with real processes: a daemon whose cycle is
 * streaming an image to a secondary over a slow serial line (a pty paced at
 * 9600 baud: about a minute for the image) keeps going on its first SIGTERM,
 * and stops at once on a second, leaving the state a power loss there would.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { realWorld, type RealWorld } from './testing/real-world.ts';
import { startAgentCli } from './testing/agent-cli.ts';
import { storedState } from './testing/stored-state.ts';
import { until } from '../../test/support/until.ts';

describe('upfleet-agent run: SIGTERM, then SIGTERM again', () => {
  let w: RealWorld;
  let daemon: ReturnType<typeof startAgentCli> | undefined;

  before(async () => {
    w = await realWorld({ deviceId: 'vehicle-stop', secondaries: [{ serial: 'brake-s', hardwareId: 'brake', verification: 'partial' }], baud: 9600 });
    const p = await startAgentCli(['provision', '--config', w.configPath]).exit;
    assert.equal(p.code, 0, p.stderr);
    await w.publish([{ name: 'brake-2.bin', data: randomBytes(60_000), hardwareIds: ['brake'], releaseCounter: 2 }]);
    const a = await w.admin('POST', '/api/v1/admin/devices/vehicle-stop/assignments', { ecus: [{ ecuSerial: 'brake-s', image: 'brake-2.bin' }] });
    assert.equal(a.status, 201, JSON.stringify(a.json));
  });
  after(async () => {
    daemon?.child.kill('SIGKILL');
    await daemon?.exit;
    await w?.close();
  });

  it('waits for the cycle on the first, stops at once on the second, and leaves the install to resume', async () => {
    daemon = startAgentCli(['run', '--config', w.configPath]);
    await until('the install on the secondary', () => storedState(w.config.storageDir) === 'installing', 30_000, 50);
    daemon.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(daemon.child.exitCode, null, 'the first SIGTERM waits for the cycle in flight');

    const second = performance.now();
    daemon.child.kill('SIGTERM');
    const exit = await daemon.exit;
    const stopMs = performance.now() - second;
    daemon = undefined;
    assert.equal(exit.code, 0, exit.stderr);
    assert.ok(stopMs < 5000, `stopped ${Math.round(stopMs)} ms after the second SIGTERM`);
    assert.match(exit.stderr, /stopping after the cycle in flight, if any \(signal again to stop now\)/);
    assert.equal(storedState(w.config.storageDir), 'installing', 'nothing after the install was saved: the next start resumes it');
    const device = await w.device();
    const { status } = device.assignments.at(-1);
    assert.ok(['pending', 'downloading', 'installing'].includes(status), `no result reached the director: the assignment is ${status}`);
  });
});
