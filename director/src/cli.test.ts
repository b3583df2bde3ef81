/**
 * The upfleet-director CLI as a user runs it: init, serve, admin commands, exit
 * codes. Each command runs at least once as a child process; the other runs go
 * through runCli in this process (the same code after the process entry).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { ImageRepoServer } from './testing/harness.ts';
import { utf8 } from '@upfleet/core';
import { runCli } from './cli-program.ts';
import { freePort, listenLoopback } from '../../test/support/loopback.ts';

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

/** The same command line in this process. */
async function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const status = await runCli(args, { out: (t) => void (stdout += t), err: (t) => void (stderr += t), env: { ...ENV, ...env } });
  return { status, stdout, stderr };
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
    const again = await cli(['init', '--dir', dir]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /^upfleet-director: UsageError USAGE: .* already holds director keys\n$/);
  });

  it('bad usage exits 2 with a one-line message and changes nothing', async () => {
    const [r, help] = await Promise.all([run(['serve', '--dir', dir]), run(['--help'])]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /missing --port/);
    assert.match(help.stdout, /campaign create/);
    const fresh = join(dir, 'never');
    const cases: Array<[string[], RegExp]> = [
      [['frobnicate'], /unknown command frobnicate/],
      [[], /missing command/],
      [['devices'], /missing devices subcommand/],
      [['devices', 'list', 'extra', '--url', 'http://127.0.0.1:9'], /unexpected argument extra \(devices list\)/],
      [['devices', 'list', '--bogus'], /^upfleet-director: Unknown option '--bogus' \(see --help\)\n$/],
      [['devices', 'list', '--url', 'notaurl'], /--url notaurl is not an http\(s\) URL/],
      [['campaign', 'create', '--name', 'x', '--image', 'a=b', '--waves', '1,abc', '--url', 'http://127.0.0.1:9'], /--waves 1,abc: expected comma-separated percentages/],
      [['campaign', 'create', '--name', 'x', '--image', 'a=b', '--threshold', 'high', '--url', 'http://127.0.0.1:9'], /--threshold high: expected a number/],
      [['init', '--dir', fresh, '--root-keys', 'abc'], /--root-keys must be a positive integer/],
      [['serve', '--dir', dir, '--port', '0', '--image-repo', repo.url, '--mqtt-port', 'abc'], /--mqtt-port must be a port number/],
      [['serve', '--dir', dir, '--port', '70000', '--image-repo', repo.url], /--port must be a port number/],
      [['serve', '--dir', dir, '--port', '0', '--image-repo', repo.url, '--mqtt-prefix', 'up/#'], /--mqtt-prefix: bad MQTT topic prefix "up\/#"/],
      [['serve', '--dir', dir, '--port', '0', '--image-repo', repo.url, '--processes', '3'], /--processes above 1 needs --mqtt-url .* or --no-mqtt; the embedded broker lives in one process/],
      [['serve', '--dir', dir, '--port', '0', '--image-repo', repo.url, '--no-mqtt', '--processes', '0'], /--processes must be a positive integer/],
      [['serve', '--dir', dir, '--port', '0', '--image-repo', repo.url, '--no-mqtt', '--database', ''], /--database is empty/],
    ];
    for (const [args, message] of cases) {
      const bad = await cli(args);
      assert.equal(bad.status, 2, `${args.join(' ')}: ${bad.stderr}`);
      assert.match(bad.stderr, message);
      assert.equal(bad.stderr.split('\n').length, 2, 'one line');
    }
    assert.equal(existsSync(fresh), false);
  });

  it('refuses an unreadable or malformed --image-repo-root at start-up, storing nothing', async () => {
    const garbage = join(dir, 'garbage.json');
    writeFileSync(garbage, '{"signed": 1}');
    const serve = ['serve', '--dir', dir, '--port', '0', '--no-mqtt', '--image-repo', repo.url];
    const missing = await cli([...serve, '--image-repo-root', join(dir, 'absent.json')]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^upfleet-director: UpfleetError UPFLEET_ERROR: cannot read --image-repo-root .*absent\.json: ENOENT\n$/);
    const malformed = await cli([...serve, '--image-repo-root', garbage]);
    assert.equal(malformed.status, 1);
    assert.match(malformed.stderr, /^upfleet-director: MalformedMetadataError /);
    assert.equal(existsSync(join(dir, 'image-repo', 'root.json')), false);
    const mysql = await cli([...serve, '--database', 'mysql://root@127.0.0.1/x']);
    assert.equal(mysql.status, 1);
    assert.match(mysql.stderr, /^upfleet-director: DatabaseConfigError BAD_DATABASE: unsupported database URL mysql:\/\/root@127\.0\.0\.1\/x: give a SQLite file path or a postgres:\/\/ URL\n$/);
    const unreachable = await cli([...serve], { UPFLEET_DIRECTOR_DATABASE: 'postgres://postgres:secret@127.0.0.1:1/none' });
    assert.equal(unreachable.status, 1);
    assert.match(unreachable.stderr, /^upfleet-director: StoreUnavailableError STORE_UNAVAILABLE: the director database \(postgres\) is unavailable: .*ECONNREFUSED/);
    assert.doesNotMatch(unreachable.stderr, /secret/);
    const never = await cli(['serve', '--dir', join(dir, 'not-initialised'), '--port', '0', '--no-mqtt', '--image-repo', repo.url]);
    assert.equal(never.status, 1);
    assert.match(never.stderr, /no root metadata in .*: run upfleet-director init/);
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
    const show = await cli(['devices', 'show', 'cli-1'], env);
    assert.equal(show.status, 0, show.stderr);
    assert.match(show.stdout, /\nsecurity events \(0\):\nAT\s+KIND\s+CODE\s+ECUSERIAL\s+DETAIL\n?$/);
    const [list, refused, wrongToken, badStatus, created] = await Promise.all([
      cli(['devices', 'list', '--json'], env),
      run(['assign', 'cli-1', '--ecu', 'x', '--image', 'fw.bin'], env),
      cli(['devices', 'list', '--token', 'wrong'], env),
      cli(['devices', 'list', '--status', 'sleeping'], env),
      run(['campaign', 'create', '--name', 'c', '--image', 'brake=fw.bin', '--waves', '50,100', '--json'], env),
    ]);
    assert.equal(badStatus.status, 1);
    assert.match(badStatus.stderr, /DirectorError BAD_REQUEST: status must be one of preregistered, pending, active, decommissioned/);
    assert.deepEqual(JSON.parse(list.stdout).map((d: any) => d.id), ['cli-1']);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /DEVICE_NOT_APPROVED/);
    assert.equal(wrongToken.status, 1);
    assert.match(wrongToken.stderr, /^upfleet-director: DirectorError WRONG_ADMIN_TOKEN: the bearer token is not the admin token\n$/);
    const id = JSON.parse(created.stdout).id;
    const started = await cli(['campaign', 'start', id], env);
    assert.equal(started.status, 0, started.stderr);
    assert.match(started.stdout, /completed|running/);
    const shown = await cli(['campaign', 'status', id], env);
    assert.equal(shown.status, 0, shown.stderr);
    assert.match(shown.stdout, /\n\ndevices \(0\):\nDEVICEID\s+WAVE\s+STATUS\s+ERRORCODE\s+UPDATEDAT\n?$/);
    // An image the repository does not have is refused at create, not at start.
    const [ghost, listed] = [await run(['campaign', 'create', '--name', 'ghost', '--image', 'brake=ghost.bin'], env), await cli(['campaign', 'list', '--json'], env)];
    assert.equal(ghost.status, 1);
    assert.match(ghost.stderr, /ASSIGNMENT_REFUSED: assignment of ghost\.bin .*refused: the image repository does not list it/);
    assert.deepEqual(JSON.parse(listed.stdout).map((c: any) => c.spec.name), ['c']);
  });

  it('names the transport error when the director cannot be reached', async () => {
    const port = await freePort();
    const r = await run(['devices', 'list', '--url', `http://127.0.0.1:${port}`]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `upfleet-director: DirectorUnreachableError UNREACHABLE: cannot reach the director at http://127.0.0.1:${port}: ECONNREFUSED (connect ECONNREFUSED 127.0.0.1:${port})\n`);
  });

  it('a taken port fails serve with one line naming the option that picks another', async () => {
    const busy = await listenLoopback(createServer());
    const port = String(busy.port);
    try {
      const mqtt = await cli(['serve', '--dir', dir, '--port', '0', '--mqtt-port', port, '--image-repo', repo.url], { UPFLEET_LOG_LEVEL: 'silent' });
      assert.equal(mqtt.status, 1);
      assert.match(mqtt.stderr, new RegExp(`^upfleet-director: PortInUseError PORT_IN_USE: the embedded MQTT broker cannot listen on 127\\.0\\.0\\.1:${port}: .*--mqtt-port P.*\n$`));
      const http = await cli(['serve', '--dir', dir, '--port', port, '--no-mqtt', '--image-repo', repo.url], { UPFLEET_LOG_LEVEL: 'silent' });
      assert.equal(http.status, 1);
      assert.match(http.stderr, /PORT_IN_USE: the director HTTP API cannot listen on .*choose another with --port P/);
    } finally {
      await busy.close();
    }
  });
});
