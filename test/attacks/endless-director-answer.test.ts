/**
 * Endless data from the director side: a man in the middle answers the
 * agent's manifest POST with a body that never ends. The real agent CLI
 * (`upfleet-agent check --once`, a child process) must stop reading at its
 * cap, end the cycle with the typed error (LengthLimitError, kept in the
 * outbox for a retry), stay small, and deliver on a later cycle through an
 * honest path. Before every director request was capped, the agent grew past
 * 2 GB here.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Stack } from '../support/stack.ts';
import { AttackProxy } from '../support/proxy.ts';
import { Vehicle } from '../support/vehicle.ts';

const AGENT_BIN = join(import.meta.dirname, '..', '..', 'agent', 'bin', 'upfleet-agent');
/** Far above what the agent needs (about 100 MB here), far below what an unbounded read reaches. */
const RSS_LIMIT = 200 * 1024 * 1024;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Highest resident set size seen while the child ran (VmHWM from /proc). */
  peakRss: number;
}

/** Runs the agent CLI; kills it if it grows past RSS_LIMIT (then `code` is null). */
function runAgent(vehicle: Vehicle, args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [AGENT_BIN, ...args, '--config', vehicle.configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, UPFLEET_LOG_LEVEL: 'warn' },
  });
  let stdout = '';
  let stderr = '';
  let peakRss = 0;
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const sample = setInterval(() => {
    try {
      const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (hwm) peakRss = Math.max(peakRss, Number(hwm[1]) * 1024);
    } catch {
      return; // exited
    }
    if (peakRss > RSS_LIMIT) child.kill('SIGKILL');
  }, 20);
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      clearInterval(sample);
      resolve({ code, stdout, stderr, peakRss });
    }));
}

let stack: Stack;
let proxy: AttackProxy;
before(async () => {
  stack = await Stack.start({ mqtt: 'none' });
  proxy = await new AttackProxy(stack.director.url).start();
});
after(async () => {
  await proxy?.close();
  await stack?.close();
});

describe('endless answer to the manifest POST', () => {
  it('ends the cycle with LengthLimitError, stays small, and delivers later through an honest path', { timeout: 120_000 }, async () => {
    const v = await Vehicle.create(stack, {
      deviceId: 'endless-answer-car', secondaries: [], agent: 'none', directorUrl: proxy.url,
      limits: { maxResponseBytes: 16 * 1024 },
    });
    try {
      const provisioned = await runAgent(v, ['provision']);
      assert.equal(provisioned.code, 0, provisioned.stderr);

      // The manifest never reaches the director: every resend meets the endless answer too.
      proxy.on(/\/manifest$/, { kind: 'endless', upstream: false });
      const attacked = await runAgent(v, ['check', '--once', '--json']);
      assert.ok(attacked.peakRss > 0 && attacked.peakRss < RSS_LIMIT, `peak RSS ${attacked.peakRss} bytes`);
      assert.equal(attacked.code, 1, attacked.stderr);
      const out = JSON.parse(attacked.stdout) as { undelivered: number; deliveryError?: { name: string; code: string; message: string } };
      assert.ok(out.undelivered >= 1, 'the manifest waits in the outbox');
      assert.equal(out.deliveryError?.name, 'LengthLimitError', attacked.stdout);
      assert.equal(out.deliveryError?.code, 'LENGTH_LIMIT');
      assert.match(out.deliveryError!.message, /more than 16384 bytes/);
      assert.match(attacked.stderr, /not delivered yet; kept in the outbox \(LengthLimitError/);
      assert.ok(proxy.requests.some((r) => r.action === 'endless'), 'the proxy did answer without end');

      proxy.clear();
      const honest = await runAgent(v, ['check', '--once', '--json']);
      assert.equal(honest.code, 0, honest.stderr);
      const again = JSON.parse(honest.stdout) as { result: string; undelivered: number; deliveryError?: unknown };
      assert.equal(again.undelivered, 0);
      assert.equal(again.deliveryError, undefined);
      assert.ok((await stack.manifests(v.deviceId)).length >= 2, 'the director has both cycles\' manifests');
    } finally {
      await v.close();
    }
  });
});
