/**
 * The generic install handler whose `activate` reboots the machine, end to end: the
 * agent daemon (`run`, as a child process) against the real director and image
 * repository. A reboot stops everything in the agent's unit with SIGTERM; here the
 * handler is stopped first and the agent half a second later, the order in which
 * the agent used to record the handler's death as a failed activation (and roll
 * back) before its own SIGTERM arrived. The next start, in a new boot, must run
 * `health` and `commit` and report success.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { realWorld, type RealWorld } from './testing/real-world.ts';
import { runAgentCli, startAgentCli } from './testing/agent-cli.ts';

describe('an install handler whose activate reboots the machine (systemctl reboot)', () => {
  let w: RealWorld;
  let bootId = randomUUID();

  before(async () => {
    w = await realWorld({ deviceId: 'vehicle-handler-reboot', handler: '#!/bin/sh\n' });
    // The handler needs the world's directory: written after the world exists.
    const { writeFileSync } = await import('node:fs');
    writeFileSync(
      join(w.dir, 'handler.sh'),
      `#!/bin/sh
echo "$UPFLEET_PHASE $UPFLEET_SLOT" >> "${w.dir}/handler.log"
case "$UPFLEET_PHASE" in
  install) cp "$1" "${w.dir}/slot-$UPFLEET_SLOT" ;;
  activate)
    # The machine goes down: this handler and its shell first, the agent (the shell's parent) a moment later.
    agent=$(cut -d' ' -f4 /proc/$PPID/stat)
    (sleep 0.5; kill -TERM "$agent") &
    kill -TERM $PPID $$ ;;
esac
`,
    );
    const p = await agent(['provision']);
    assert.equal(p.code, 0, p.stderr);
  });
  after(async () => {
    await w?.close();
  });

  const env = () => ({ NODE_ENV: 'test', UPFLEET_TEST_BOOT_ID: bootId });
  const agent = (args: string[]) => runAgentCli([...args, '--config', w.configPath], env());
  const handlerLog = () => readFileSync(join(w.dir, 'handler.log'), 'utf8').trim().split('\n');

  it('treats the handler killed by the reboot as a restart under way, then runs health and commit after it and reports success', async () => {
    await w.publish([{ name: 'gateway-fw-2.bin', data: randomBytes(50_000), hardwareIds: ['gateway'], releaseCounter: 2 }]);
    const a = await w.admin('POST', '/api/v1/admin/devices/vehicle-handler-reboot/assignments', { ecus: [{ ecuSerial: 'primary-1', image: 'gateway-fw-2.bin' }] });
    assert.equal(a.status, 201, JSON.stringify(a.json));

    const daemon = startAgentCli(['run', '--config', w.configPath], env());
    const exit = await daemon.exit;
    assert.equal(exit.code, 0, `the daemon stops cleanly on the reboot's SIGTERM: ${exit.signal} ${exit.stderr}`);
    assert.deepEqual(handlerLog(), ['install b', 'activate b'], 'no rollback: the activation was not taken for a failure');
    assert.equal((await w.device()).assignments.at(-1).status, 'installing', 'nothing reported as failed');

    bootId = randomUUID(); // the machine restarted
    const r = await agent(['check', '--once']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /update installed/);
    assert.deepEqual(handlerLog(), ['install b', 'activate b', 'health b', 'commit b']);
    const device = await w.device();
    assert.equal(device.assignments.at(-1).status, 'succeeded');
    assert.equal(device.ecus.find((e: { serial: string }) => e.serial === 'primary-1').installed?.filename, 'gateway-fw-2.bin');
  });
});
