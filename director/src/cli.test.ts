/** The upfleet-director CLI as a user runs it: init, serve, admin commands, exit codes. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImageRepoServer } from './testing/harness.ts';
import { utf8 } from '@upfleet/core';

const BIN = fileURLToPath(new URL('../bin/upfleet-director', import.meta.url));
const ENV = { ...process.env, UPFLEET_PASSPHRASE: 'root-pass', UPFLEET_ONLINE_PASSPHRASE: '', UPFLEET_ADMIN_TOKEN: 'adm', UPFLEET_PROVISIONING_TOKEN: 'prov', UPFLEET_LOG_LEVEL: 'info' };

/** Runs the CLI without blocking this process (the image repository is served from here). */
function run(args: string[], env: Record<string, string | undefined> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('upfleet-director CLI', () => {
  let dir: string;
  let serve: ChildProcess;
  let url: string;
  let repo: ImageRepoServer;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'upfleet-director-cli-'));
    repo = await new ImageRepoServer().start();
    repo.addImage('fw.bin', utf8('fw'), ['brake'], 1);
  });
  after(async () => {
    serve?.kill('SIGTERM');
    await repo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('init writes the keys, the root, and a 0600 online passphrase file; refuses a second init', async () => {
    const r = await run(['init', '--dir', dir, '--json'], { UPFLEET_ONLINE_PASSPHRASE: undefined });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.rootKeyids.length, 1);
    assert.equal(statSync(join(dir, 'keys', 'online.passphrase')).mode & 0o777, 0o600);
    assert.equal((await run(['init', '--dir', dir])).status, 1);
  });

  it('bad usage exits 2 with a message', async () => {
    const [r, unknown, help] = await Promise.all([run(['serve', '--dir', dir]), run(['frobnicate']), run(['--help'])]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /missing --port/);
    assert.equal(unknown.status, 2);
    assert.match(help.stdout, /campaign create/);
  });

  it('serves, and admin commands print tables or JSON, exiting 1 on refusals', async () => {
    serve = spawn(process.execPath, [BIN, 'serve', '--dir', dir, '--port', '0', '--mqtt-port', '0', '--image-repo', repo.url],
      { env: { ...ENV, UPFLEET_ONLINE_PASSPHRASE: undefined }, stdio: ['ignore', 'pipe', 'pipe'] });
    url = await new Promise<string>((resolve, reject) => {
      let buf = '';
      serve.stdout!.on('data', (c) => {
        buf += c;
        const m = /"url":"([^"]+)"/.exec(buf);
        if (m) resolve(m[1]!);
      });
      serve.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
    });
    const env = { UPFLEET_DIRECTOR_URL: url };
    const pre = await run(['devices', 'preregister', 'cli-1', '--tag', 'eu'], env);
    assert.equal(pre.status, 0, pre.stderr);
    assert.match(pre.stdout, /cli-1\s+preregistered/);
    const [list, refused, wrongToken] = await Promise.all([
      run(['devices', 'list', '--json'], env),
      run(['assign', 'cli-1', '--ecu', 'x', '--image', 'fw.bin'], env),
      run(['devices', 'list', '--token', 'wrong'], env),
    ]);
    assert.deepEqual(JSON.parse(list.stdout).map((d: any) => d.id), ['cli-1']);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /DEVICE_NOT_APPROVED/);
    assert.equal(wrongToken.status, 1);
    assert.match(wrongToken.stderr, /UNAUTHENTICATED/);
    const created = await run(['campaign', 'create', '--name', 'c', '--image', 'brake=fw.bin', '--waves', '50,100', '--json'], env);
    const id = JSON.parse(created.stdout).id;
    const started = await run(['campaign', 'start', id], env);
    assert.equal(started.status, 0, started.stderr);
    assert.match(started.stdout, /completed|running/);
  });
});
