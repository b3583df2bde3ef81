/** The server's JSON log lines as a log reader parses them (one key per field). */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { initRepository } from './operations.ts';
import { MemoryKeyring } from './online-keys.ts';
import { startImageRepoServer, type ImageRepoServer } from './server.ts';

describe('image repository logs', () => {
  let dir: string;
  let server: ImageRepoServer;
  const lines: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'upfleet-repo-logs-'));
    const repo = initRepository({ dir, passphrase: 'pw' });
    const sink = new Writable({ write: (chunk: Buffer, _e, cb) => cb(void lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))) });
    // The logger the CLI builds: a pino logger named upfleet-repo.
    server = await startImageRepoServer({
      dir, port: 0, host: '127.0.0.1', token: 't', logger: pino({ name: 'upfleet-repo', level: 'info' }, sink),
      keyring: new MemoryKeyring([repo.signers.snapshot, repo.signers.timestamp]),
    });
  });

  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('"image stored" names the logger once and the image as target', async () => {
    const res = await fetch(`${server.url}/api/v1/images/fw/brake-1.bin`, { method: 'PUT', headers: { authorization: 'Bearer t' }, body: new Uint8Array(1234) });
    assert.equal(res.status, 201);
    const line = lines.find((l) => l.includes('"image stored"'));
    assert.ok(line, lines.join('\n'));
    assert.equal(line.match(/"name":/g)?.length, 1, line);
    const entry = JSON.parse(line) as Record<string, unknown>;
    assert.equal(entry.name, 'upfleet-repo');
    assert.equal(entry.target, 'fw/brake-1.bin');
    assert.equal(entry.length, 1234);
    assert.equal(entry.level, 30);
  });
});
