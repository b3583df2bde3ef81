/**
 * `npm run demo` as a newcomer runs it (not on a TTY: plain progress lines):
 * exit 0 with the per-ECU table once the director verified the manifest; a
 * non-zero exit that says why, soon after its --timeout, when the update does
 * not finish; exit 2 on bad options.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const DEMO = join(ROOT, 'scripts', 'demo.ts');

/** Runs the demo; `markedAt` is when its output first matched `mark`, `exitedAt` when it exited (performance.now()). */
function demo(args: string[], mark?: RegExp): Promise<{ code: number | null; out: string; err: string; markedAt?: number; exitedAt: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', DEMO, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: join(import.meta.dirname, '..', '..') });
  let out = '';
  let err = '';
  let markedAt: number | undefined;
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (mark && markedAt === undefined && mark.test(out)) markedAt = performance.now();
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, out, err, markedAt, exitedAt: performance.now() })));
}

describe('npm run demo', () => {
  it('updates every ECU and ends with exit 0 and the table', { timeout: 90_000 }, async () => {
    const r = await demo([]);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /serial links: (real pty pairs \(socat \+ node-serialport\)|in-process link emulator) at 115200 baud/);
    assert.match(r.out, /signed by supplier role "supplier-brakes"/);
    assert.match(r.out, /ECU serial\s+hardware ID\s+before\s+after\s+verified by\s+time/);
    for (const serial of ['demo-car-1-gw', 'demo-car-1-brake', 'demo-car-1-door']) {
      assert.match(r.out, new RegExp(`${serial}\\s.*2\\.0\\.0 \\(release 2\\)`), serial);
    }
    assert.match(r.out, /demo-car-1-brake .*ECU \(full\)\s/);
    assert.match(r.out, /download\s+100%/);
    // Sizes with binary prefixes: the 256 000-byte gateway image is 250 KiB, the 16 000-byte door image 15.6 KiB.
    assert.match(r.out, /gateway-2\.0\.0\.bin\s+250 KiB\s+hardware gateway/);
    assert.match(r.out, /demo-car-1-door\s+download 100%\s+15\.6\/15\.6 KiB/);
    assert.match(r.out, /OK: the director verified manifest #\d+ from demo-car-1/);
  });

  it('--keep-running prints nothing for polls that change nothing, and the steps of a new update', { timeout: 120_000 }, async () => {
    // A user's PATH: without the checkout's node_modules/.bin, where `npm run` would find the workspace bins.
    const userPath = (process.env.PATH ?? '').split(':').filter((d) => !d.startsWith(ROOT)).join(':');
    const env = { ...process.env, PATH: userPath };
    const child = spawn(process.execPath, ['--import', 'tsx', DEMO, '--keep-running', '--link', 'emulated'], { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT, env });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const until = async (pattern: RegExp, from: number, ms: number): Promise<void> => {
      const end = Date.now() + ms;
      while (!pattern.test(out.slice(from))) {
        if (Date.now() > end) throw new Error(`no ${pattern} in:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const work = mkdtempSync(join(tmpdir(), 'upfleet-demo-keep-'));
    try {
      await until(/Press Ctrl-C to stop\.\n/, 0, 90_000);
      // The agent polls every 2 s: three polls that find nothing print nothing.
      const quietFrom = out.length;
      await new Promise((r) => setTimeout(r, 6_500));
      assert.equal(out.slice(quietFrom), '', 'no output while nothing changes');

      // The commands the demo suggests, pasted as printed into a shell outside the checkout: publish a new gateway image and assign it.
      assert.doesNotMatch(out, /\bnpx\b/, 'npx outside the checkout would ask the registry for an unscoped package');
      const publish = /^ {2}(echo new > fw\.bin && .*)$/m.exec(out)![1]!;
      await new Promise<void>((resolve, reject) => execFile('sh', ['-c', publish], { cwd: work, env }, (e, _o, err) => (e ? reject(new Error(err)) : resolve())));
      const assign = /Bearer ([^']+)'.* (http:\S+\/assignments) -d '([^']+)'/.exec(out)!;
      const r = await fetch(assign[2]!, { method: 'POST', headers: { authorization: `Bearer ${assign[1]}`, 'content-type': 'application/json' }, body: assign[3] });
      assert.equal(r.status, 201, await r.text());
      await until(/step: downloading images\n[\s\S]*step: idle\n/, quietFrom, 30_000);
      assert.doesNotMatch(out.slice(quietFrom), /\x1b\[/, 'no cursor moves over the summary');
    } finally {
      child.kill('SIGINT');
      assert.equal(await exited, 0, out);
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('exits 1 and says why when the update does not finish in time, without waiting for the agent to finish its cycle', { timeout: 60_000 }, async () => {
    // The set-up outlasts 0.2 s: the demo is out of time once the update starts (the line
    // below), and gives up at its first look. The agent's cycle would take seconds more.
    const r = await demo(['--timeout', '0.2', '--link', 'emulated'], /MQTT notify sent\n/);
    assert.equal(r.code, 1);
    assert.match(r.out, /FAILED:\n\s+- assignment timeout/);
    assert.match(r.out, /the demo's --timeout of 0\.2 s ran out \(raise it, e\.g\. --timeout 1;/, 'the failure names the option to raise');
    assert.ok(r.markedAt !== undefined, r.out);
    const lateMs = r.exitedAt - r.markedAt;
    assert.ok(lateMs < 3000, `exited ${Math.round(lateMs)} ms after the update started`);
  });

  it('exits 2 on bad options', async () => {
    const r = await demo(['--vehicles', 'zero']);
    assert.equal(r.code, 2);
    assert.match(r.err, /--vehicles must be an integer/);
  });
});
