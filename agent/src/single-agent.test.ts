/**
 * One agent per device, with real processes: `upfleet-agent run` as a child
 * holds the control socket and a secondary's serial port (a real pty pair);
 * `status` and `check --once` beside it are answered by the daemon and never
 * open the port; a second `run` is refused with exit code 3; after a SIGKILL
 * of the daemon its socket file is stale and `status` works alone, and a new
 * daemon takes the socket over.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { realWorld, type RealWorld } from './testing/real-world.ts';
import { startAgentCli } from './testing/agent-cli.ts';

const cli = (w: RealWorld, args: string[]) => startAgentCli([...args, '--config', w.configPath], { UPFLEET_LOG_LEVEL: 'info' });

/** One request on the control socket, as any client would send it. */
function rawAsk(path: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let got = '';
    s.on('connect', () => s.write(line + '\n'));
    s.on('data', (d) => (got += d.toString()));
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Status {
  ecus: Array<{ serial: string; installed: { filename: string } | null; error?: string }>;
  lastCycle: { result: string } | null;
}

describe('one agent per device', () => {
  let w: RealWorld;
  let sock: string;
  let daemon: ReturnType<typeof cli> | undefined;

  before(async () => {
    w = await realWorld({ deviceId: 'vehicle-one', secondaries: [{ serial: 'brake-1', hardwareId: 'brake', verification: 'partial' }] });
    sock = join(w.config.storageDir, 'agent.sock');
    const p = await cli(w, ['provision']).exit;
    assert.equal(p.code, 0, p.stderr);
  });
  after(async () => {
    daemon?.child.kill('SIGKILL');
    await daemon?.exit;
    await w?.close();
  });

  /** The end of the agent's last cycle, as its database records it. */
  function lastCycleAt(): number | undefined {
    if (!existsSync(join(w.config.storageDir, 'agent.db'))) return undefined;
    const db = new Database(join(w.config.storageDir, 'agent.db'), { readonly: true });
    try {
      const row = db.prepare("SELECT value FROM kv WHERE key = 'lastCycle'").get() as { value: string } | undefined;
      return row && Date.parse((JSON.parse(row.value) as { at: string }).at);
    } finally {
      db.close();
    }
  }

  /** Starts a daemon and waits until its first cycle is over (it then holds the secondary's port). */
  async function startDaemon(): Promise<void> {
    const started = Date.now();
    daemon = cli(w, ['run']);
    await until('the daemon\'s first cycle', async () => ((lastCycleAt() ?? 0) >= started ? true : undefined));
  }

  it('answers status and check --once beside the daemon without opening the serial port', async () => {
    await startDaemon();
    const status = await cli(w, ['status', '--json']).exit;
    assert.equal(status.code, 0, status.stderr);
    const s = JSON.parse(status.stdout) as Status;
    const brake = s.ecus.find((e) => e.serial === 'brake-1')!;
    assert.equal(brake.error, undefined, 'the ECU answered through the daemon, which holds its port');
    assert.equal(brake.installed?.filename, w.secondaries[0]!.sim.store.state.slots[w.secondaries[0]!.sim.store.state.activeSlot]?.filename);

    // An update assigned now: check --once through the daemon installs it.
    const data = randomBytes(20_000);
    await w.publish([{ name: 'brake-9.bin', data, hardwareIds: ['brake'], releaseCounter: 9 }]);
    const a = await w.admin('POST', '/api/v1/admin/devices/vehicle-one/assignments', { ecus: [{ ecuSerial: 'brake-1', image: 'brake-9.bin' }] });
    assert.equal(a.status, 201, JSON.stringify(a.json));
    const check = await cli(w, ['check', '--once', '--json']).exit;
    assert.equal(check.code, 0, check.stderr);
    assert.ok(['success', 'noUpdate'].includes((JSON.parse(check.stdout) as { result: string }).result), check.stdout);
    const device = await w.device();
    assert.equal(device.ecus.find((e: { serial: string }) => e.serial === 'brake-1').installed.filename, 'brake-9.bin');
    assert.equal(device.assignments.at(-1).status, 'succeeded');

    const after = JSON.parse((await cli(w, ['status', '--json']).exit).stdout) as Status;
    assert.notEqual(after.lastCycle?.result, 'aborted', 'no cycle of the daemon was cut short');
    assert.equal(after.ecus.find((e) => e.serial === 'brake-1')!.error, undefined);
    assert.equal(daemon!.child.exitCode, null, 'the daemon still runs');
    assert.equal(statSync(sock).mode & 0o777, 0o600, 'only the owner may talk to the daemon');
  });

  it('answers a request it does not know with a typed error, on the socket itself', async () => {
    const answer = JSON.parse(await rawAsk(sock, '{"cmd":"reboot"}')) as { error: { name: string; code: string } };
    assert.equal(answer.error.name, 'UsageError');
    assert.equal(answer.error.code, 'USAGE');
  });

  it('refuses a second run with AgentRunningError and exit code 3, and the first keeps its socket', async () => {
    const second = await cli(w, ['run']).exit;
    assert.equal(second.code, 3, second.stderr);
    assert.match(second.stderr, /AgentRunningError: another upfleet-agent daemon runs for this device: .*agent\.sock answers/);
    const s = JSON.parse(await rawAsk(sock, '{"cmd":"status"}')) as Status;
    assert.ok(s.lastCycle, 'the first daemon still answers');
  });

  it('after a SIGKILL of the daemon, status works alone despite the stale socket, and a new daemon replaces it', async () => {
    daemon!.child.kill('SIGKILL');
    await daemon!.exit;
    assert.ok(existsSync(sock), 'the killed daemon left its socket file');
    const status = await cli(w, ['status', '--json']).exit;
    assert.equal(status.code, 0, status.stderr);
    const s = JSON.parse(status.stdout) as Status;
    assert.equal(s.ecus.find((e) => e.serial === 'brake-1')!.installed?.filename, 'brake-9.bin', 'status opened the port itself');

    // Two daemons started together over the stale socket: one takes it, the other is refused.
    const started = Date.now();
    const pair = [cli(w, ['run']), cli(w, ['run'])];
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('neither daemon was refused: both took the socket')), 20_000).unref());
    const refused = await Promise.race([...pair.map((d, i) => d.exit.then((e) => ({ i, e }))), timeout]);
    assert.equal(refused.e.code, 3, refused.e.stderr);
    daemon = pair[1 - refused.i]!;
    await until('the surviving daemon\'s first cycle', async () => ((lastCycleAt() ?? 0) >= started ? true : undefined));
    const answer = JSON.parse(await rawAsk(sock, '{"cmd":"status"}')) as Status;
    assert.ok(answer.lastCycle, 'the new daemon answers on the socket it took over');
    assert.equal(daemon.child.exitCode, null);
    const stopped = daemon.exit;
    daemon.child.kill('SIGTERM');
    const exit = await stopped;
    assert.equal(exit.code, 0, exit.stderr);
    assert.ok(!existsSync(sock), 'a daemon that stops removes its socket');
    daemon = undefined;
  });
});
