/**
 * `upfleet-repo export`: the tree it writes holds, at the very paths the
 * server answers, the very bytes the server answers (every metadata file and
 * every published image under both its hashes); a second run writes nothing;
 * a publish adds only the new files and a new timestamp.json.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { runCli } from './cli-program.ts';
import { startImageRepoServer, type ImageRepoServer } from './server.ts';

const PASSPHRASE = 'export passphrase';

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, { out: (t) => void (stdout += t), err: (t) => void (stderr += t), env: { ...process.env, UPFLEET_PASSPHRASE: PASSPHRASE } });
  return { code, stdout, stderr };
}

function files(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) (e.isDirectory() ? walk(join(d, e.name)) : out.push(relative(root, join(d, e.name))));
  };
  walk(root);
  return out.sort();
}

describe('upfleet-repo export', () => {
  let work: string;
  let dir: string;
  let out: string;
  let server: ImageRepoServer;
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'upfleet-export-'));
    dir = join(work, 'repo');
    out = join(work, 'static');
    assert.equal((await cli(['init', '--dir', dir])).code, 0);
    writeFileSync(join(work, 'a.bin'), randomBytes(5000));
    assert.equal((await cli(['add-target', join(work, 'a.bin'), '--dir', dir, '--name', 'ecu/a-1.0.bin', '--hardware-id', 'ecu', '--version', '1.0.0'])).code, 0);
    server = await startImageRepoServer({ dir, token: 't', logger: pino({ level: 'silent' }) });
  });
  after(async () => {
    await server?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('writes every file the server serves, byte for byte, at the path the server serves it', async () => {
    const r = await cli(['export', '--dir', dir, '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const written = files(out);
    assert.ok(written.includes('metadata/timestamp.json') && written.includes('metadata/root.json') && written.includes('metadata/1.root.json'));
    assert.equal(written.filter((f) => f.startsWith('targets/ecu/') && f.endsWith('.a-1.0.bin')).length, 2, 'sha256 and sha512 names');
    assert.equal(JSON.parse(r.stdout).written, written.length);
    for (const f of written) {
      const res = await fetch(`${server.url}/${f}`);
      assert.equal(res.status, 200, f);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), readFileSync(join(out, f)), f);
    }
  });

  it('a second run writes nothing; after a publish it adds the new files and replaces timestamp.json', async () => {
    assert.match((await cli(['export', '--dir', dir, '--out', out])).stdout, /: 0 file\(s\) written; timestamp version 2\n$/);
    const before = new Map(files(out).map((f) => [f, statSync(join(out, f)).mtimeMs]));
    writeFileSync(join(work, 'b.bin'), randomBytes(3000));
    assert.equal((await cli(['add-target', join(work, 'b.bin'), '--dir', dir, '--name', 'b-1.0.bin', '--hardware-id', 'ecu', '--version', '1.0.0'])).code, 0);
    assert.match((await cli(['export', '--dir', dir, '--out', out])).stdout, /: 6 file\(s\) written; timestamp version 3\n$/);
    const now = files(out);
    assert.deepEqual(now.filter((f) => !before.has(f)).map((f) => f.replace(/[0-9a-f]{64,128}/, 'H')).sort(),
      ['metadata/3.snapshot.json', 'metadata/3.timestamp.json', 'metadata/3.targets.json', 'targets/H.b-1.0.bin', 'targets/H.b-1.0.bin'].sort());
    for (const [f, mtime] of before) if (f !== 'metadata/timestamp.json') assert.equal(statSync(join(out, f)).mtimeMs, mtime, `${f} untouched`);
    assert.deepEqual(readFileSync(join(out, 'metadata/timestamp.json')), Buffer.from(await (await fetch(`${server.url}/metadata/timestamp.json`)).arrayBuffer()));
  });

  it('without --out it is a usage error that writes nothing', async () => {
    const r = await cli(['export', '--dir', dir]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'upfleet-repo export: export needs --out OUT\n');
  });
});
