/**
 * The CLI as a user runs it: every command at least once as a child process
 * (with UPFLEET_PASSPHRASE), the other runs in-process through runCli (same
 * code path after the process entry; no interpreter start-up per run), against
 * DIR and against a real server on loopback, and an off-the-shelf TUF client
 * (tuf-js) reading the result: top-level and delegated targets byte-exact, and
 * a root rotation it picks up.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Updater } from 'tuf-js';
import { HttpError, Updater as CoreUpdater } from '@upfleet/core';
import { runCli } from './cli-program.ts';
import { startImageRepoServer, type ImageRepoServer } from './server.ts';
import { freePort, listenLoopback } from '../../test/support/loopback.ts';

const BIN = fileURLToPath(new URL('../bin/upfleet-repo', import.meta.url));
const TOKEN = 'cli-token';
const PASSPHRASE = 'correct horse';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The real executable in a child process. */
function child(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, UPFLEET_PASSPHRASE: PASSPHRASE, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** The same command line in this process. */
async function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    out: (text) => void (stdout += text),
    err: (text) => void (stderr += text),
    env: { ...process.env, UPFLEET_PASSPHRASE: PASSPHRASE, ...env },
  });
  return { code, stdout, stderr };
}

function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return r;
}

describe('upfleet-repo CLI', () => {
  let work: string;
  let dir: string;
  let server: ImageRepoServer;
  const images = { brake: randomBytes(20_000), gateway: randomBytes(7_000), camera: randomBytes(12_345), brake2: randomBytes(900) };

  const file = (name: string) => join(work, name);
  const remote = () => ['--remote', server.url, '--token', TOKEN];

  async function serverStatus(): Promise<{ versions: Record<string, number>; targets: Array<{ name: string; role: string }> }> {
    return (await fetch(`${server.url}/api/v1/status`)).json() as never;
  }

  /** A tuf-js client that trusts root version 1 of the repository. */
  function client(name: string): { updater: Updater; metadataDir: string; targetDir: string } {
    const metadataDir = join(work, name, 'metadata');
    const targetDir = join(work, name, 'targets');
    mkdirSync(metadataDir, { recursive: true });
    mkdirSync(targetDir, { recursive: true });
    copyFileSync(join(dir, 'metadata', '1.root.json'), join(metadataDir, 'root.json'));
    return {
      updater: new Updater({ metadataDir, targetDir, metadataBaseUrl: `${server.url}/metadata`, targetBaseUrl: `${server.url}/targets` }),
      metadataDir,
      targetDir,
    };
  }

  async function download(updater: Updater, name: string): Promise<Buffer> {
    const info = await updater.getTargetInfo(name);
    assert.ok(info, `tuf-js finds ${name}`);
    return readFileSync(await updater.downloadTarget(info));
  }

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'upfleet-repo-cli-'));
    dir = join(work, 'repo');
    for (const [name, data] of Object.entries(images)) writeFileSync(file(`${name}.bin`), data);
  });

  after(async () => {
    await server?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('prints --help for every command and exits 2 on bad arguments', async () => {
    const [mainHelp, badChild] = await Promise.all([child(['--help']), child(['init', '--dir', dir, '--root-keys', 'many'])]);
    assert.match(ok(mainHelp).stdout, /Commands:/);
    assert.equal(badChild.code, 2, badChild.stderr);
    assert.equal(badChild.stderr, 'upfleet-repo init: --root-keys must be a non-negative integer\n');
    const commands = ['init', 'keygen', 'add-target', 'remove-target', 'delegate', 'sign-delegated', 'rotate-key', 'status', 'migrate-keys', 'serve', 'export'];
    const helps = await Promise.all(commands.map((c) => cli([c, '--help'])));
    commands.forEach((c, i) => assert.match(ok(helps[i]!).stdout, new RegExp(`upfleet-repo ${c}`)));
    const bad = await Promise.all([
      cli(['frobnicate']),
      cli(['add-target', '--dir', dir, '--bogus']),
      cli(['add-target', file('brake.bin'), '--dir', dir, '--hardware-id', 'x', '--version', '1']),
      cli(['init', '--dir', dir, '--root-keys', '1', '--root-threshold', '2']),
      cli(['rotate-key', 'acme', '--dir', dir]),
      cli(['remove-target', 'x.bin', '--dir', dir], { UPFLEET_PASSPHRASE: '' }),
      cli(['add-target', file('brake.bin'), '--dir', dir, '--name', 'a', '--hardware-id', 'x', '--version', '1', '--release-counter', 'many']),
      cli(['serve', '--dir', dir, '--port', '70000', '--token', TOKEN]),
      cli(['add-target', file('brake.bin'), '--dir', dir, '--name', 'a', '--hardware-id', 'x', '--version', '1', '--release-counter', '-1']),
      cli([]),
    ]);
    for (const r of bad) assert.equal(r.code, 2, r.stderr);
    assert.match(bad[2]!.stderr, /--name is required/);
    assert.match(bad[3]!.stderr, /--root-threshold must be between 1 and --root-keys/);
    assert.match(bad[7]!.stderr, /--port must be at most 65535/);
    // parseArgs errors: one line, the first sentence only.
    assert.equal(bad[1]!.stderr, "upfleet-repo add-target: Unknown option '--bogus' (run upfleet-repo add-target --help)\n");
    assert.equal(bad[8]!.stderr, "upfleet-repo add-target: Option '--release-counter' argument is ambiguous (run upfleet-repo add-target --help)\n");
    assert.match(bad[9]!.stderr, /^upfleet-repo: the Upfleet image repository/);
    assert.equal(bad[9]!.stdout, '');
  });

  it('init creates the keys, the first root and an empty targets', async () => {
    const r = ok(await child(['init', '--dir', dir, '--root-keys', '2', '--root-threshold', '2', '--json']));
    const result = JSON.parse(r.stdout) as { keyids: Record<string, string[]>; versions: Record<string, number> };
    assert.equal(result.keyids.root!.length, 2);
    assert.deepEqual(result.versions, { root: 1, snapshot: 1, targets: 1, timestamp: 1 });
    assert.deepEqual(readdirSync(join(dir, 'keys', 'offline')).map((n) => n.split('-')[0]).sort(), ['root', 'root', 'targets']);
    assert.deepEqual(readdirSync(join(dir, 'keys', 'online')).map((n) => n.split('-')[0]).sort(), ['passphrase', 'snapshot', 'timestamp']);
    assert.ok(readdirSync(join(dir, 'metadata')).includes('1.root.json'));
    const again = await cli(['init', '--dir', dir]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /error WORKSPACE: .* already a repository/);
    server = await startImageRepoServer({ dir, token: TOKEN, logger: pino({ level: 'silent' }) });
  });

  it('serve on a taken port fails with one line naming --port', async () => {
    const busy = await listenLoopback(createServer());
    const port = busy.port;
    try {
      const r = await child(['serve', '--dir', dir, '--port', String(port), '--token', TOKEN]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `upfleet-repo serve: error PORT_IN_USE: the image repository cannot listen on 127.0.0.1:${port}: the port is in use; choose another with --port P (0 = any free port)\n`);
    } finally {
      await busy.close();
    }
  });

  it('add-target signs locally, and the running server serves it at once', async () => {
    const r = ok(await child(['add-target', file('brake.bin'), '--dir', dir, '--name', 'brake-1.0.bin', '--hardware-id', 'brake-ecu', '--version', '1.0.0', '--release-counter', '2']));
    assert.match(r.stdout, /targets version 2: 20000 bytes, sha256 [0-9a-f]{64}/);
    const s = await serverStatus();
    assert.equal(s.versions.targets, 2);
    assert.deepEqual(s.targets.map((t) => t.name), ['brake-1.0.bin']);
  });

  it('add-target --remote uploads the image and the signed targets', async () => {
    ok(await cli(['add-target', file('gateway.bin'), '--dir', dir, ...remote(), '--name', 'gw/gateway-2.0.bin', '--hardware-id', 'gw-a', '--hardware-id', 'gw-b', '--version', '2.0.0']));
    const s = await serverStatus();
    assert.equal(s.versions.targets, 3);
    assert.deepEqual(s.targets.map((t) => t.name).sort(), ['brake-1.0.bin', 'gw/gateway-2.0.bin']);
  });

  it('add-target reports a long upload: one final line off a terminal, a bar redrawn in place on one', async () => {
    writeFileSync(file('big.bin'), randomBytes(6 * 1024 * 1024));
    const args = (name: string) => ['add-target', file('big.bin'), '--dir', dir, ...remote(), '--name', name, '--hardware-id', 'gw-a', '--version', '2.1.0'];
    const piped = ok(await child(args('big-a.bin')));
    assert.match(piped.stderr, /^uploaded big-a\.bin: 6\.00 MiB in \d+\.\d s \(\d+(\.\d+)? [KMG]iB\/s\)\n$/);
    // In a pseudo-terminal (util-linux script): stderr is a TTY there.
    const quote = (a: string) => `'${a.replaceAll("'", "'\\''")}'`;
    const inPty = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile('script', ['-qfec', [process.execPath, BIN, ...args('big-b.bin')].map(quote).join(' '), '/dev/null'],
        { env: { ...process.env, UPFLEET_PASSPHRASE: PASSPHRASE } }, (error, stdout) => resolve({ code: error ? 1 : 0, out: stdout }));
    });
    assert.equal(inPty.code, 0, inPty.out);
    assert.match(inPty.out, /\r\x1b\[2Kuploading big-b\.bin \[[#-]{24}\] +\d+% \d+(\.\d+)?\/6\.00 MiB/);
    assert.match(inPty.out, /\r\x1b\[2Kuploaded big-b\.bin: 6\.00 MiB in /);
    assert.deepEqual((await serverStatus()).targets.map((t) => t.name).filter((n) => n.startsWith('big')).sort(), ['big-a.bin', 'big-b.bin']);
    for (const name of ['big-a.bin', 'big-b.bin']) ok(await cli(['remove-target', name, '--dir', dir, ...remote()]));
  });

  it('fails cleanly with a wrong passphrase or a wrong token, changing nothing', async () => {
    const before = (await serverStatus()).versions;
    const [wrongPass, wrongToken] = await Promise.all([
      cli(['add-target', file('brake2.bin'), '--dir', dir, '--name', 'x.bin', '--hardware-id', 'h', '--version', '1.0.0'], { UPFLEET_PASSPHRASE: 'wrong' }),
      cli(['add-target', file('brake2.bin'), '--dir', dir, '--remote', server.url, '--token', 'nope', '--name', 'x.bin', '--hardware-id', 'h', '--version', '1.0.0']),
    ]);
    assert.equal(wrongPass.code, 1);
    assert.match(wrongPass.stderr, /error KEY_FILE: cannot decrypt \S*keys\/offline\/targets-[0-9a-f]+\.key\.json: wrong passphrase/);
    assert.equal(wrongToken.code, 1);
    assert.match(wrongToken.stderr, /error UNAUTHORIZED/);
    const noFile = await cli(['add-target', file('absent.bin'), '--dir', dir, '--name', 'x.bin', '--hardware-id', 'h', '--version', '1.0.0']);
    assert.equal(noFile.code, 1);
    assert.equal(noFile.stderr, `upfleet-repo add-target: error ENOENT: no such file or directory, open '${file('absent.bin')}'\n`);
    assert.deepEqual((await serverStatus()).versions, before);
  });

  it('add-target refuses a version that is not SemVer 2.0.0 with exit 2, publishing nothing', async () => {
    const before = (await serverStatus()).versions;
    const [banana, leadingZero] = await Promise.all([
      child(['add-target', file('brake2.bin'), '--dir', dir, ...remote(), '--name', 'x.bin', '--hardware-id', 'h', '--version', 'banana']),
      cli(['add-target', file('brake2.bin'), '--dir', dir, '--name', 'x.bin', '--hardware-id', 'h', '--version', '1.02.0']),
    ]);
    assert.equal(banana.code, 2, banana.stderr);
    assert.equal(banana.stderr, 'upfleet-repo add-target: --version "banana" is not a semantic version (SemVer 2.0.0): expected MAJOR.MINOR.PATCH, e.g. 1.4.0\n');
    assert.equal(banana.stdout, '');
    assert.equal(leadingZero.code, 2, leadingZero.stderr);
    assert.match(leadingZero.stderr, /"02" is not a number without leading zeros/);
    assert.deepEqual((await serverStatus()).versions, before);
    assert.ok(!(await serverStatus()).targets.some((t) => t.name === 'x.bin'));
  });

  it('delegates to a supplier, who signs its role with its own key; tuf-js downloads through the delegation', async () => {
    ok(await child(['keygen', '--out', file('acme.key.json')], { UPFLEET_PASSPHRASE: 'supplier secret' }));
    const keyFile = readFileSync(file('acme.key.json'));
    const overwrite = await cli(['keygen', '--out', file('acme.key.json')], { UPFLEET_PASSPHRASE: 'other' });
    assert.equal(overwrite.code, 1);
    assert.match(overwrite.stderr, /error WORKSPACE: .*acme\.key\.json exists: refusing to overwrite a key file/);
    assert.deepEqual(readFileSync(file('acme.key.json')), keyFile);
    ok(await child(['delegate', 'acme', '--dir', dir, ...remote(), '--paths', 'acme/*', '--hardware-id', 'camera', '--key', file('acme.key.json'), '--threshold', '1']));
    // The supplier has its own directory: only its key and the server.
    const supplierDir = join(work, 'supplier');
    const signed = ok(await child(
      ['sign-delegated', 'acme', '--dir', supplierDir, ...remote(), '--key', file('acme.key.json'), '--add', file('camera.bin'), '--name', 'acme/camera-3.1.bin', '--hardware-id', 'camera', '--version', '3.1.0'],
      { UPFLEET_PASSPHRASE: 'supplier secret' },
    ));
    assert.match(signed.stdout, /acme version 1/);
    const [outside, wrongHardware] = await Promise.all([
      cli(
        ['sign-delegated', 'acme', '--dir', supplierDir, ...remote(), '--key', file('acme.key.json'), '--add', file('camera.bin'), '--name', 'brake/evil.bin', '--hardware-id', 'camera', '--version', '1.0.0'],
        { UPFLEET_PASSPHRASE: 'supplier secret' },
      ),
      cli(
        ['sign-delegated', 'acme', '--dir', supplierDir, ...remote(), '--key', file('acme.key.json'), '--add', file('camera.bin'), '--name', 'acme/x.bin', '--hardware-id', 'brake-ecu', '--version', '1.0.0'],
        { UPFLEET_PASSPHRASE: 'supplier secret' },
      ),
    ]);
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /error DELEGATION_VIOLATION: acme target brake\/evil.bin: outside the paths/);
    assert.equal(wrongHardware.code, 1);
    assert.match(wrongHardware.stderr, /error DELEGATION_VIOLATION: .*hardware ID brake-ecu/);
    const badVersion = await cli(
      ['sign-delegated', 'acme', '--dir', supplierDir, ...remote(), '--key', file('acme.key.json'), '--add', file('camera.bin'), '--name', 'acme/y.bin', '--hardware-id', 'camera', '--version', '2.0'],
      { UPFLEET_PASSPHRASE: 'supplier secret' },
    );
    assert.equal(badVersion.code, 2, badVersion.stderr);
    assert.match(badVersion.stderr, /^upfleet-repo sign-delegated: --version "2\.0" is not a semantic version/);
    assert.equal((await serverStatus()).versions.acme, 1);

    const { updater } = client('tuf-a');
    await updater.refresh();
    assert.deepEqual(await download(updater, 'brake-1.0.bin'), images.brake);
    assert.deepEqual(await download(updater, 'gw/gateway-2.0.bin'), images.gateway);
    assert.deepEqual(await download(updater, 'acme/camera-3.1.bin'), images.camera);
  });

  it('remove-target drops a target from the next targets version', async () => {
    ok(await child(['remove-target', 'gw/gateway-2.0.bin', '--dir', dir, ...remote()]));
    const { updater } = client('tuf-b');
    await updater.refresh();
    assert.equal(await updater.getTargetInfo('gw/gateway-2.0.bin'), undefined);
    const missing = await cli(['remove-target', 'gw/gateway-2.0.bin', '--dir', dir, ...remote()]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /error NOT_FOUND/);
  });

  it('rotate-key root: a client that trusted root 1 moves to root 2', async () => {
    const { updater, metadataDir } = client('tuf-c');
    await updater.refresh();
    const oldRootKeys = readdirSync(join(dir, 'keys', 'offline')).filter((n) => n.startsWith('root-'));
    ok(await child(['rotate-key', 'root', '--dir', dir]));
    assert.deepEqual(readdirSync(join(dir, 'keys', 'offline', 'retired')).sort(), oldRootKeys.sort());
    const newRootKeys = readdirSync(join(dir, 'keys', 'offline')).filter((n) => n.startsWith('root-'));
    assert.equal(newRootKeys.length, 2);
    assert.equal(newRootKeys.filter((n) => oldRootKeys.includes(n)).length, 0);

    const again = new Updater({ metadataDir, targetDir: join(work, 'tuf-c', 'targets'), metadataBaseUrl: `${server.url}/metadata`, targetBaseUrl: `${server.url}/targets` });
    await again.refresh();
    const trusted = JSON.parse(readFileSync(join(metadataDir, 'root.json'), 'utf8')) as { signed: { version: number; roles: { root: { keyids: string[] } } } };
    assert.equal(trusted.signed.version, 2);
    assert.equal(trusted.signed.roles.root.keyids.length, 2);
    assert.deepEqual(await download(again, 'acme/camera-3.1.bin'), images.camera);
  });

  it('rotate-key targets: root 3 names the new key, and targets signed with it publish', async () => {
    ok(await cli(['rotate-key', 'targets', '--dir', dir, ...remote()]));
    ok(await cli(['add-target', file('brake2.bin'), '--dir', dir, ...remote(), '--name', 'brake-1.1.bin', '--hardware-id', 'brake-ecu', '--version', '1.1.0']));
    const { updater } = client('tuf-d');
    await updater.refresh();
    assert.deepEqual(await download(updater, 'brake-1.1.bin'), images.brake2);
    assert.equal(readdirSync(join(dir, 'keys', 'offline', 'retired')).filter((n) => n.startsWith('targets-')).length, 1);
  });

  it('rotate-key timestamp: the server signs with the new online key from keys/online/', async () => {
    const { updater, metadataDir } = client('tuf-e');
    await updater.refresh();
    ok(await cli(['rotate-key', 'timestamp', '--dir', dir, ...remote()]));
    assert.equal(readdirSync(join(dir, 'keys', 'online', 'retired')).filter((n) => n.startsWith('timestamp-')).length, 1);
    const again = new Updater({ metadataDir, targetDir: join(work, 'tuf-e', 'targets'), metadataBaseUrl: `${server.url}/metadata`, targetBaseUrl: `${server.url}/targets` });
    await again.refresh();
    const root = JSON.parse(readFileSync(join(metadataDir, 'root.json'), 'utf8')) as { signed: { version: number; roles: { timestamp: { keyids: string[] } } } };
    const timestamp = JSON.parse(readFileSync(join(metadataDir, 'timestamp.json'), 'utf8')) as { signatures: Array<{ keyid: string }> };
    assert.equal(root.signed.version, 4);
    assert.deepEqual(timestamp.signatures.map((s) => s.keyid), root.signed.roles.timestamp.keyids);
  });

  it('the core Updater follows the root chain from version 1 and finds the supplier target for its hardware', async () => {
    const stored = new Map<string, Uint8Array>([['root.json', new Uint8Array(readFileSync(join(dir, 'metadata', '1.root.json')))]]);
    const updater = new CoreUpdater({
      metadataBaseUrl: `${server.url}/metadata/`,
      targetBaseUrl: `${server.url}/targets/`,
      now: new Date(),
      fetcher: {
        async fetch(url, maxLength) {
          const res = await fetch(url);
          if (!res.ok) throw new HttpError(url, res.status);
          const bytes = new Uint8Array(await res.arrayBuffer());
          assert.ok(bytes.byteLength <= maxLength);
          return bytes;
        },
      },
      store: { read: async (name) => stored.get(name), writeAtomic: async (name, bytes) => void stored.set(name, bytes), remove: async (name) => void stored.delete(name) },
    });
    await updater.refresh();
    assert.equal(updater.trustedSet.root.version, 4);
    assert.equal(await updater.findTarget('acme/camera-3.1.bin', { hardwareId: 'brake-ecu' }), undefined);
    const found = await updater.findTarget('acme/camera-3.1.bin', { hardwareId: 'camera' });
    assert.equal(found?.role, 'acme');
    assert.deepEqual(Buffer.from(await updater.downloadTarget(found!)), images.camera);
  });

  it('status shows versions, keys, delegations and targets', async () => {
    const json = JSON.parse(ok(await cli(['status', '--dir', dir, '--json'])).stdout) as {
      versions: Record<string, number>; delegations: Array<{ role: string; version: number }>; targets: Array<{ name: string; role: string; releaseCounter: number }>;
      keys: Record<string, { threshold: number; inKeysDir: number }>; expires: Record<string, string>;
    };
    for (const role of ['root', 'targets', 'snapshot', 'timestamp', 'acme']) assert.match(json.expires[role] ?? '', /^\d{4}-\d\d-\d\dT/, role);
    assert.equal(json.versions.root, 4);
    assert.equal(json.versions.acme, 1);
    assert.deepEqual(json.delegations.map((d) => [d.role, d.version]), [['acme', 1]]);
    assert.deepEqual(json.targets.map((t) => [t.name, t.role]).sort(), [['acme/camera-3.1.bin', 'acme'], ['brake-1.0.bin', 'targets'], ['brake-1.1.bin', 'targets']]);
    assert.equal(json.targets.find((t) => t.name === 'brake-1.0.bin')!.releaseCounter, 2);
    assert.deepEqual(json.keys.root, { ...json.keys.root, threshold: 2, inKeysDir: 2 });
    // Reading a server needs no upload token.
    const remoteStatus = ok(await child(['status', '--dir', dir, '--remote', server.url], { UPFLEET_REPO_TOKEN: '' })).stdout;
    assert.match(remoteStatus, /acme\s+paths acme\/\*\s+hardware camera\s+1-of-1\s+v1/);
    assert.match(remoteStatus, /timestamp\s+v\d+\s+expires \d{4}-/);
    const closedUrl = `http://127.0.0.1:${await freePort()}`;
    const unreachable = await cli(['status', '--dir', dir, '--remote', closedUrl]);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /^upfleet-repo status: error UNREACHABLE: cannot reach the server: .*ECONNREFUSED.* \(from http:.*\)\n$/);
  });
});
