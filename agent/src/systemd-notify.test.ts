import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Liveness, serviceNotifier } from './systemd-notify.ts';
import { startAgentCli } from './testing/agent-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'upfleet-notify-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('Liveness', () => {
  it('is healthy while idle, and while busy only with activity within the stall limit', () => {
    const l = new Liveness(1000, 0);
    assert.equal(l.healthy(10_000), true, 'idle');
    l.busy(10_000);
    assert.equal(l.healthy(10_900), true);
    l.beat(10_900);
    assert.equal(l.healthy(11_800), true);
    assert.equal(l.healthy(12_000), false, 'no activity for 1.1 s');
    l.idle();
    assert.equal(l.healthy(50_000), true);
  });
});

describe('serviceNotifier', () => {
  const warn = () => undefined;
  it('does nothing without NOTIFY_SOCKET', () => {
    assert.equal(serviceNotifier({ env: {}, pid: 1, warn }), undefined);
  });
  it('feeds the watchdog at half of WATCHDOG_USEC, only when it watches this process', () => {
    assert.equal(serviceNotifier({ env: { NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '30000000' }, pid: 7, warn })?.watchdogIntervalMs, 15_000);
    assert.equal(serviceNotifier({ env: { NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '30000000', WATCHDOG_PID: '7' }, pid: 7, warn })?.watchdogIntervalMs, 15_000);
    assert.equal(serviceNotifier({ env: { NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '30000000', WATCHDOG_PID: '8' }, pid: 7, warn })?.watchdogIntervalMs, undefined);
    assert.equal(serviceNotifier({ env: { NOTIFY_SOCKET: '/x' }, pid: 7, warn })?.watchdogIntervalMs, undefined);
  });
});

const tools = ['systemd-notify', 'python3'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' }).status !== 0);

describe('upfleet-agent run under Type=notify', { skip: tools.length > 0 ? `missing ${tools.join(', ')}` : false }, () => {
  it('sends READY=1 once it serves, WATCHDOG=1 at half the interval while healthy, STOPPING=1 on SIGTERM', async () => {
    const socket = join(dir, 'notify.sock');
    // The receiver stands in for systemd: it closes systemd-notify's barrier fd, as the manager does.
    const receiver = spawn('python3', [fileURLToPath(new URL('./testing/notify-receiver.py', import.meta.url)), socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    const messages: string[] = [];
    let listening!: () => void;
    const ready = new Promise<void>((r) => (listening = r));
    let buffered = '';
    receiver.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
        const m = JSON.parse(buffered.slice(0, i)) as string;
        buffered = buffered.slice(i + 1);
        if (m === 'LISTENING') listening();
        else messages.push(m);
      }
    });
    try {
      await ready;
      const config = join(dir, 'agent.json');
      // Never provisioned, and no director: the daemon still serves (status, check) and its loop runs.
      writeFileSync(config, JSON.stringify({
        deviceId: 'notify-1', directorUrl: 'http://127.0.0.1:9', imageRepoUrl: 'http://127.0.0.1:9', storageDir: join(dir, 'state'),
        pollIntervalSeconds: 60, provisioning: { directorRoot: '/nonexistent', imageRepoRoot: '/nonexistent' },
        ecus: { primary: { serial: 'gw-1', hardwareId: 'gw', installCommand: 'false' } },
      }));
      const agent = startAgentCli(['run', '--config', config], { NOTIFY_SOCKET: socket, WATCHDOG_USEC: '400000', UPFLEET_LOG_LEVEL: 'error' });
      const deadline = Date.now() + 20_000;
      while (messages.filter((m) => m === 'WATCHDOG=1').length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      agent.child.kill('SIGTERM');
      const exit = await agent.exit;
      assert.equal(exit.code, 0, exit.stderr);
      const kinds = messages.filter((m) => m !== 'BARRIER=1').map((m) => m.split('\n')[0]);
      assert.equal(kinds[0], 'READY=1', kinds.join(' '));
      assert.ok(kinds.filter((k) => k === 'WATCHDOG=1').length >= 3, kinds.join(' '));
      assert.equal(kinds.at(-1), 'STOPPING=1', kinds.join(' '));
    } finally {
      receiver.kill('SIGTERM');
    }
  });
});
