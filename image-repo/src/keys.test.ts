/**
 * Offline and online keys kept apart. Root and targets keys (offline) and
 * snapshot and timestamp keys (online) live in separate directories under
 * separate passphrases, every key file 0600 in 0700 directories; `serve`
 * works from a copy of DIR holding keys/online/ alone, never needs the
 * offline passphrase, and still re-signs timestamp and snapshot; the offline
 * commands work against it with the offline passphrase only. A directory of
 * the old one-passphrase layout is refused with a typed error until
 * `migrate-keys` splits it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { pino } from 'pino';
import { Updater } from 'tuf-js';
import { decryptKeyFile, encryptKeyFile, KeyFileError, Metadata } from '@upfleet/core';
import { runCli } from './cli-program.ts';
import * as errors from './errors.ts';
import { initRepository } from './operations.ts';
import { startImageRepoServer } from './server.ts';
import { BIN, childEnv, killServe, startServe, type ServeChild } from './testing/serve-child.ts';

const OFFLINE = 'offline passphrase';
const ONLINE = 'online passphrase';
const SUPPLIER = 'supplier passphrase';
const TOKEN = 'keys-token';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A command line in this process, with exactly the passphrases given (none inherited). */
async function cli(args: string[], env: Record<string, string | undefined>): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    out: (text) => void (stdout += text),
    err: (text) => void (stderr += text),
    env: childEnv({ UPFLEET_PASSPHRASE: undefined, UPFLEET_ONLINE_PASSPHRASE: undefined, UPFLEET_REPO_TOKEN: undefined, ...env }),
  });
  return { code, stdout, stderr };
}

/** The real executable, for the commands whose process boundary matters. */
function child(args: string[], env: Record<string, string | undefined>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: childEnv({ UPFLEET_PASSPHRASE: undefined, UPFLEET_ONLINE_PASSPHRASE: undefined, ...env }) }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return r;
}

/** The role prefix of every key file in `dir`, sorted. */
function rolesIn(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.key.json')).map((n) => n.split('-')[0]!).sort();
}

/** Mode bits of every directory and file under `dir`, itself included. */
function modes(dir: string): Map<string, number> {
  const out = new Map<string, number>([[dir, statSync(dir).mode & 0o777]]);
  for (const name of readdirSync(dir, { recursive: true }) as string[]) out.set(join(dir, name), statSync(join(dir, name)).mode & 0o777);
  return out;
}

function assertSecretModes(keysDir: string): void {
  const found = modes(keysDir);
  for (const [path, mode] of found) {
    const expected = statSync(path).isDirectory() ? 0o700 : 0o600;
    assert.equal(mode.toString(8), expected.toString(8), path);
  }
}

async function versions(url: string): Promise<Record<string, number>> {
  return ((await (await fetch(`${url}/healthz`)).json()) as { versions: Record<string, number> }).versions;
}

/** Waits until the server re-signed both timestamp and snapshot past `before`. */
async function waitForResign(url: string, before: Record<string, number>): Promise<Record<string, number>> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const now = await versions(url);
    if (now.timestamp! > before.timestamp! && now.snapshot! > before.snapshot!) return now;
    if (Date.now() > deadline) assert.fail(`no re-signing: ${JSON.stringify(before)} -> ${JSON.stringify(now)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every signature on the served timestamp and snapshot is by a key the current root names for that role. */
async function assertSignedOnline(url: string): Promise<void> {
  const v = await versions(url);
  const root = Metadata.fromBytes(new Uint8Array(await (await fetch(`${url}/metadata/${v.root}.root.json`)).arrayBuffer()), 'root');
  for (const [role, file] of [['timestamp', 'timestamp.json'], ['snapshot', `${v.snapshot}.snapshot.json`]] as const) {
    const md = JSON.parse(await (await fetch(`${url}/metadata/${file}`)).text()) as { signatures: Array<{ keyid: string }> };
    assert.deepEqual(md.signatures.map((s) => s.keyid), root.signed.roles[role].keyids, role);
  }
}

describe('offline and online keys', () => {
  let work: string;
  const servers: ServeChild[] = [];

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'upfleet-repo-keys-'));
  });

  after(async () => {
    for (const s of servers) await killServe(s);
    rmSync(work, { recursive: true, force: true });
  });

  async function serve(args: string[], env: Record<string, string | undefined>): Promise<ServeChild> {
    const s = await startServe(args, { UPFLEET_PASSPHRASE: undefined, UPFLEET_ONLINE_PASSPHRASE: undefined, UPFLEET_REPO_TOKEN: TOKEN, ...env });
    servers.push(s);
    return s;
  }

  describe('init', () => {
    it('puts root and targets keys in keys/offline and snapshot and timestamp keys in keys/online, files 0600, directories 0700', async () => {
      const dir = join(work, 'init');
      const r = ok(await cli(['init', '--dir', dir, '--root-keys', '2', '--json'], { UPFLEET_PASSPHRASE: OFFLINE }));
      const keys = join(dir, 'keys');
      assert.deepEqual(rolesIn(join(keys, 'offline')), ['root', 'root', 'targets']);
      assert.deepEqual(rolesIn(join(keys, 'online')), ['snapshot', 'timestamp']);
      assert.deepEqual(readdirSync(keys).sort(), ['offline', 'online']);
      assert.equal(JSON.parse(r.stdout).onlinePassphraseFile, join(keys, 'online', 'passphrase'));
      assertSecretModes(keys);

      // Each side's passphrase opens its own keys only.
      const generated = readFileSync(join(keys, 'online', 'passphrase'), 'utf8').trim();
      assert.notEqual(generated, OFFLINE);
      const [offlineFile] = readdirSync(join(keys, 'offline')).map((n) => readFileSync(join(keys, 'offline', n)));
      const [onlineFile] = readdirSync(join(keys, 'online')).filter((n) => n.endsWith('.key.json')).map((n) => readFileSync(join(keys, 'online', n)));
      decryptKeyFile(offlineFile!, OFFLINE);
      assert.throws(() => decryptKeyFile(offlineFile!, generated), KeyFileError);
      decryptKeyFile(onlineFile!, generated);
      assert.throws(() => decryptKeyFile(onlineFile!, OFFLINE), KeyFileError);
    });

    it('keygen writes the key file 0600', async () => {
      const out = join(work, 'keygen.key.json');
      ok(await cli(['keygen', '--out', out], { UPFLEET_PASSPHRASE: SUPPLIER }));
      assert.equal((statSync(out).mode & 0o777).toString(8), '600');
    });

    it('refuses an online passphrase equal to the offline one, creating nothing', async () => {
      const dir = join(work, 'same');
      const r = await cli(['init', '--dir', dir], { UPFLEET_PASSPHRASE: OFFLINE, UPFLEET_ONLINE_PASSPHRASE: OFFLINE });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /the online passphrase must differ from the offline one/);
      assert.equal(existsSync(dir), false);
    });
  });

  describe('serve', () => {
    it('runs from keys/online alone with the online passphrase, re-signs timestamp and snapshot, and takes offline-signed changes', async () => {
      const offline = join(work, 'offline');
      const server = join(work, 'server');
      ok(await cli(['init', '--dir', offline], { UPFLEET_PASSPHRASE: OFFLINE, UPFLEET_ONLINE_PASSPHRASE: ONLINE }));
      // What the server machine gets: settings, the working copy, keys/online/.
      mkdirSync(join(server, 'keys'), { recursive: true, mode: 0o700 });
      copyFileSync(join(offline, 'upfleet-repo.json'), join(server, 'upfleet-repo.json'));
      cpSync(join(offline, 'metadata'), join(server, 'metadata'), { recursive: true });
      cpSync(join(offline, 'keys', 'online'), join(server, 'keys', 'online'), { recursive: true });
      // ... and the offline machine keeps no online keys.
      rmSync(join(offline, 'keys', 'online'), { recursive: true });

      const s = await serve(['--dir', server, '--timestamp-expiry', '3', '--snapshot-expiry', '3'], { UPFLEET_ONLINE_PASSPHRASE: ONLINE });
      const first = await versions(s.url);
      await waitForResign(s.url, first);
      await assertSignedOnline(s.url);

      // The offline side, with the offline passphrase only: targets, a delegation, a supplier, rotations.
      const env = { UPFLEET_PASSPHRASE: OFFLINE, UPFLEET_REPO_TOKEN: TOKEN };
      const remote = ['--dir', offline, '--remote', s.url];
      const image = randomBytes(5000);
      writeFileSync(join(work, 'fw.bin'), image);
      ok(await cli(['add-target', join(work, 'fw.bin'), ...remote, '--name', 'fw.bin', '--hardware-id', 'ecu', '--version', '1.0.0'], env));
      ok(await cli(['keygen', '--out', join(work, 'acme.key.json')], { UPFLEET_PASSPHRASE: SUPPLIER }));
      ok(await cli(['delegate', 'acme', ...remote, '--paths', 'acme/*', '--key', join(work, 'acme.key.json')], env));
      ok(await cli(
        ['sign-delegated', 'acme', '--dir', join(work, 'supplier'), '--remote', s.url, '--key', join(work, 'acme.key.json'),
          '--add', join(work, 'fw.bin'), '--name', 'acme/fw.bin', '--hardware-id', 'ecu', '--version', '1.0.0'],
        { UPFLEET_PASSPHRASE: SUPPLIER, UPFLEET_REPO_TOKEN: TOKEN },
      ));
      ok(await cli(['rotate-key', 'targets', ...remote], env));
      ok(await cli(['rotate-key', 'root', ...remote], env));
      // A new timestamp key, made on the server side under the online passphrase: the offline
      // side only reads its public part.
      const newTimestamp = join(work, 'timestamp-new.key.json');
      ok(await cli(['keygen', '--out', newTimestamp], { UPFLEET_PASSPHRASE: ONLINE }));
      cpSync(newTimestamp, join(server, 'keys', 'online', 'timestamp-new.key.json'));
      ok(await cli(['rotate-key', 'timestamp', ...remote, '--new-key', newTimestamp], env));
      assert.equal(existsSync(join(offline, 'keys', 'online')), true, 'the new online key file is kept with the offline copy');
      assertSecretModes(join(offline, 'keys'));

      const v = await waitForResign(s.url, await versions(s.url));
      assert.equal(v.root, 4);
      await assertSignedOnline(s.url);
      // An off-the-shelf client that trusted root 1 follows everything.
      const client = join(work, 'tuf');
      mkdirSync(join(client, 'targets'), { recursive: true });
      copyFileSync(join(offline, 'metadata', '1.root.json'), join(client, 'root.json'));
      const updater = new Updater({ metadataDir: client, targetDir: join(client, 'targets'), metadataBaseUrl: `${s.url}/metadata`, targetBaseUrl: `${s.url}/targets` });
      await updater.refresh();
      const info = await updater.getTargetInfo('acme/fw.bin');
      assert.deepEqual(readFileSync(await updater.downloadTarget(info!)), image);
    });

    it('never reads the offline keys or the offline passphrase: garbage offline key files and a wrong UPFLEET_PASSPHRASE do not matter', async () => {
      const dir = join(work, 'garbage');
      ok(await cli(['init', '--dir', dir], { UPFLEET_PASSPHRASE: OFFLINE }));
      for (const name of readdirSync(join(dir, 'keys', 'offline'))) writeFileSync(join(dir, 'keys', 'offline', name), 'not a key file');
      // A fresh index, bootstrapped from the working copy with the short expiry periods below.
      rmSync(join(dir, 'server'), { recursive: true });
      const s = await serve(['--dir', dir, '--timestamp-expiry', '3', '--snapshot-expiry', '3'], { UPFLEET_PASSPHRASE: 'wrong' });
      await waitForResign(s.url, await versions(s.url));
      await assertSignedOnline(s.url);
    });

    it('without an online passphrase, refuses to start with a KeyFileError naming where to put one', async () => {
      const dir = join(work, 'no-online');
      initRepository({ dir, passphrase: OFFLINE });
      rmSync(join(dir, 'keys', 'online', 'passphrase'));
      await assert.rejects(
        startImageRepoServer({ dir, token: TOKEN, logger: pino({ level: 'silent' }) }),
        (e: unknown) => e instanceof KeyFileError && /UPFLEET_ONLINE_PASSPHRASE or write .*keys\/online\/passphrase/.test(e.message),
      );
      const wrong = await child(['serve', '--dir', dir, '--port', '0'], { UPFLEET_PASSPHRASE: OFFLINE, UPFLEET_ONLINE_PASSPHRASE: OFFLINE, UPFLEET_REPO_TOKEN: TOKEN });
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /error KEY_FILE: cannot decrypt \S*keys\/online\/(snapshot|timestamp)-[0-9a-f]+\.key\.json: wrong passphrase/);
    });
  });

  describe('a directory of the old one-passphrase layout', () => {
    /** init, then every key file back in keys/ under the offline passphrase, as before the split. */
    function oldLayout(dir: string): string[] {
      initRepository({ dir, passphrase: OFFLINE, onlinePassphrase: ONLINE });
      const keys = join(dir, 'keys');
      for (const name of readdirSync(join(keys, 'offline'))) renameSync(join(keys, 'offline', name), join(keys, name));
      for (const name of readdirSync(join(keys, 'online'))) {
        const signer = decryptKeyFile(readFileSync(join(keys, 'online', name)), ONLINE);
        writeFileSync(join(keys, name), encryptKeyFile(signer, OFFLINE), { mode: 0o644 });
      }
      rmSync(join(keys, 'offline'), { recursive: true });
      rmSync(join(keys, 'online'), { recursive: true });
      mkdirSync(join(keys, 'retired'));
      const retired = readdirSync(keys).find((n) => n.startsWith('root-'))!;
      copyFileSync(join(keys, retired), join(keys, 'retired', retired));
      return readdirSync(keys).filter((n) => n.endsWith('.key.json')).sort();
    }

    it('serve and the offline commands refuse it with OldKeyLayoutError naming the files, changing nothing', async () => {
      const dir = join(work, 'old');
      const files = oldLayout(dir);
      const before = readdirSync(join(dir, 'keys')).sort();
      await assert.rejects(
        startImageRepoServer({ dir, token: TOKEN, onlinePassphrase: OFFLINE, logger: pino({ level: 'silent' }) }),
        (e: unknown) => e instanceof errors.OldKeyLayoutError && e.code === 'OLD_KEY_LAYOUT' && e.keysDir === join(dir, 'keys') && e.files.join() === files.join(),
      );
      writeFileSync(join(work, 'old.bin'), 'x');
      const add = await cli(['add-target', join(work, 'old.bin'), '--dir', dir, '--name', 'old.bin', '--hardware-id', 'h', '--version', '1.0.0'], { UPFLEET_PASSPHRASE: OFFLINE });
      assert.equal(add.code, 1);
      assert.match(add.stderr, /error OLD_KEY_LAYOUT: .* run upfleet-repo migrate-keys/);
      assert.deepEqual(readdirSync(join(dir, 'keys')).sort(), before);
    });

    it('migrate-keys splits it (a wrong passphrase moves nothing), and serve then runs on keys/online alone', async () => {
      const dir = join(work, 'migrate');
      const files = oldLayout(dir);
      const keys = join(dir, 'keys');
      const wrong = await cli(['migrate-keys', '--dir', dir], { UPFLEET_PASSPHRASE: 'wrong' });
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /error KEY_FILE/);
      assert.deepEqual(readdirSync(keys).filter((n) => n.endsWith('.key.json')).sort(), files);
      assert.equal(existsSync(join(keys, 'online')), false);

      const r = JSON.parse(ok(await cli(['migrate-keys', '--dir', dir, '--json'], { UPFLEET_PASSPHRASE: OFFLINE })).stdout) as { offline: string[]; online: string[] };
      assert.deepEqual(r.offline.map((n) => n.split('-')[0]), ['root', 'targets']);
      assert.deepEqual(r.online.map((n) => n.split('-')[0]), ['snapshot', 'timestamp']);
      assert.deepEqual(readdirSync(keys).sort(), ['offline', 'online']);
      assert.deepEqual(rolesIn(join(keys, 'offline')), ['root', 'targets']);
      assert.deepEqual(rolesIn(join(keys, 'offline', 'retired')), ['root']);
      assert.deepEqual(rolesIn(join(keys, 'online')), ['snapshot', 'timestamp']);
      assertSecretModes(keys);

      // Both sides work: a local add-target (offline keys, and the online ones for DIR's own index) ...
      writeFileSync(join(work, 'migrated.bin'), 'migrated');
      ok(await cli(['add-target', join(work, 'migrated.bin'), '--dir', dir, '--name', 'migrated.bin', '--hardware-id', 'h', '--version', '1.0.0'], { UPFLEET_PASSPHRASE: OFFLINE }));
      // ... and a server with the offline keys gone, which re-signs with the re-encrypted online keys.
      rmSync(join(keys, 'offline'), { recursive: true });
      let now = new Date();
      const server = await startImageRepoServer({ dir, token: TOKEN, logger: pino({ level: 'silent' }), now: () => now });
      try {
        const before = await versions(server.url);
        now = new Date(now.getTime() + 7 * 86400_000);
        server.refresh();
        const after = await versions(server.url);
        assert.equal(after.timestamp, before.timestamp! + 1);
        assert.equal(after.snapshot, before.snapshot! + 1);
        assert.equal(after.targets, 2);
      } finally {
        await server.close();
      }
    });
  });
});
