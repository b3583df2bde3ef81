/**
 * upfleet-tuf end to end: the real launcher, spawned, against a RepositoryBuilder
 * repository on a loopback static server.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RepositoryBuilder, utf8 } from '@upfleet/core';
import { serveFiles, type StaticServer } from '../../../test/interop/static-server.ts';

const BIN = fileURLToPath(new URL('../../bin/upfleet-tuf', import.meta.url));

function run(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(BIN, args, { env }, (error, _stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stderr }));
  });
}

describe('upfleet-tuf', () => {
  let dir: string;
  let server: StaticServer;
  let repo: RepositoryBuilder;
  const image = utf8('delegated image bytes');

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'upfleet-tuf-cli-'));
    repo = new RepositoryBuilder({ now: new Date() });
    repo.addTarget('top.bin', utf8('top'));
    repo.delegate('targets', { name: 'supplier/x', paths: ['s/*'] });
    repo.addTarget('s/image.bin', image, { role: 'supplier/x' });
    server = await serveFiles(repo.commit());
  });

  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function client(name: string): { md: string; td: string; args: (command: string, targets?: string[]) => string[] } {
    const md = join(dir, name, 'md');
    const td = join(dir, name, 'td');
    mkdirSync(md, { recursive: true });
    mkdirSync(td, { recursive: true });
    const common = ['--metadata-dir', md, '--metadata-url', `${server.url}metadata`];
    return {
      md,
      td,
      args: (command, targets = []) => [
        ...common,
        ...targets.flatMap((t) => ['--target-name', t]),
        ...(targets.length ? ['--target-dir', td, '--target-base-url', `${server.url}targets`] : []),
        command,
      ],
    };
  }

  async function initialised(name: string): Promise<ReturnType<typeof client>> {
    const c = client(name);
    const rootFile = join(dir, name, 'initial-root.json');
    writeFileSync(rootFile, repo.files.get('metadata/1.root.json')!);
    assert.equal((await run(['--metadata-dir', c.md, 'init', rootFile])).code, 0);
    return c;
  }

  it('init stores the given root byte for byte', async () => {
    const c = await initialised('init');
    assert.deepEqual(readFileSync(join(c.md, 'root.json')), Buffer.from(repo.files.get('metadata/1.root.json')!));
  });

  it('refresh stores the top-level metadata as served, and nothing else', async () => {
    const c = await initialised('refresh');
    assert.equal((await run(c.args('refresh'))).code, 0);
    assert.deepEqual(readdirSync(c.md).sort(), ['root.json', 'snapshot.json', 'targets.json', 'timestamp.json']);
    assert.deepEqual(readFileSync(join(c.md, 'targets.json')), Buffer.from(repo.bytes('targets')));
  });

  it('download verifies a delegated target, stores it under its quoted name, and uses the verified copy next time', async () => {
    const c = await initialised('download');
    assert.equal((await run(c.args('download', ['s/image.bin']))).code, 0);
    assert.deepEqual(readFileSync(join(c.td, 's%2Fimage.bin')), Buffer.from(image));
    assert.ok(existsSync(join(c.md, 'supplier%2Fx.json')), 'the role name is quoted, not a path');
    const before = server.requests.filter((p) => p.startsWith('targets/')).length;
    assert.equal((await run(c.args('download', ['s/image.bin']))).code, 0);
    assert.equal(server.requests.filter((p) => p.startsWith('targets/')).length, before);
  });

  it('exits 1 for a target no role lists', async () => {
    const c = await initialised('missing');
    const { code, stderr } = await run(c.args('download', ['nope.bin']));
    assert.equal(code, 1);
    assert.match(stderr, /not found/);
  });

  it('exits 1 and leaves nothing in the target dir when the served bytes are wrong', async () => {
    const c = await initialised('tampered');
    const files = new Map(server.files);
    const info = repo.targets.targets['top.bin']!;
    files.set(`targets/${info.hashes.sha256}.top.bin`, utf8('TOP'));
    server.files = files;
    try {
      assert.equal((await run(c.args('download', ['top.bin']))).code, 1);
      assert.deepEqual(readdirSync(c.td), []);
    } finally {
      server.files = repo.files;
    }
  });

  it('loads only what a step uses: the suite starts it per step, so start-up counts', async () => {
    // A preload that writes, at exit, the built-in modules and the files the process loaded.
    const record = join(dir, 'record-modules.cjs');
    writeFileSync(record, "process.on('exit', () => require('node:fs').writeFileSync(process.env.RECORD_TO, JSON.stringify({ builtins: process.moduleLoadList, files: Object.keys(require.cache) })));");
    const loaded = async (args: string[]) => {
      const to = join(dir, 'loaded.json');
      const { code, stderr } = await run(args, { ...process.env, NODE_OPTIONS: `--require ${record}`, RECORD_TO: to });
      assert.equal(code, 0, stderr);
      const { builtins, files } = JSON.parse(readFileSync(to, 'utf8')) as { builtins: string[]; files: string[] };
      return { builtin: (name: string) => builtins.includes(`NativeModule ${name}`), file: (part: string) => files.some((f) => f.includes(part)) };
    };
    const c = await initialised('start-up');
    const refresh = await loaded(c.args('refresh'));
    assert.ok(refresh.builtin('net') && refresh.builtin('crypto'), 'the record shows what a refresh needs');
    // The default ed25519 provider is node:crypto; node:v8 only for a long download's gc-pressure;
    // node:http only for an answer not framed by Content-Length (this server frames all of them).
    for (const unused of ['perf_hooks', 'v8', 'http']) assert.equal(refresh.builtin(unused), false, unused);
    assert.equal(refresh.file('@noble/ed25519'), false, '@noble/ed25519');
    const init = await loaded(['--metadata-dir', client('start-up-init').md, 'init', join(dir, 'start-up', 'initial-root.json')]);
    for (const unused of ['http', 'crypto']) assert.equal(init.builtin(unused), false, unused);
  });

  it('exits 1 on bad arguments', async () => {
    assert.equal((await run(['--bogus', 'refresh'])).code, 1);
    assert.equal((await run(['--metadata-dir', dir, 'frobnicate'])).code, 1);
  });
});
