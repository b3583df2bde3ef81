/**
 * A keep-alive connection that got a 413 is closed: the answer says
 * `Connection: close` and the server ends the socket, instead of leaving the
 * unread body to stall (or be parsed as) the next request. Raw TCP on loopback,
 * so the test sees exactly what a client on that connection sees.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { exchange } from '../../test/support/raw-exchange.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { initRepository } from './operations.ts';
import { MemoryKeyring } from './online-keys.ts';
import { startImageRepoServer, type ImageRepoServer } from './server.ts';

const TOKEN = 'close-token';
const NEXT = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';

describe('image repository: connection after a 413', () => {
  let dir: string;
  let server: ImageRepoServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'upfleet-repo-close-'));
    const repo = initRepository({ dir, passphrase: 'pw' });
    server = await startImageRepoServer({
      dir, port: 0, host: '127.0.0.1', token: TOKEN, logger: pino({ level: 'silent' }),
      keyring: new MemoryKeyring([repo.signers.snapshot, repo.signers.timestamp]),
      maxUploadBytes: 100_000, maxMetadataBytes: 10_000,
    });
  });

  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const cases = [
    { name: 'an upload of 8 MiB, left unread', path: '/api/v1/images/big.bin', method: 'PUT', size: 8 << 20 },
    { name: 'a publish body just over the limit, received whole', path: '/api/v1/publish', method: 'POST', size: 10_001 },
  ];
  for (const c of cases) {
    it(`closes the connection after ${c.name}, answering nothing more on it`, async () => {
      const head = `${c.method} ${c.path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: ${c.size}\r\n\r\n`;
      const r = await exchange(server.url, head, Buffer.alloc(c.size, 0x20), NEXT);
      assert.ok(r.closed, `the server keeps the connection open:\n${r.text.slice(0, 400)}`);
      assert.match(r.text, /^HTTP\/1\.1 413 /);
      assert.match(r.text, /\r\nconnection: close\r\n/i);
      assert.equal(r.text.match(/HTTP\/1\.1 /g)!.length, 1, 'one answer only');
    });
  }

  it('closes the connection after a chunked publish body over the limit, even one received whole', async () => {
    const chunk = Buffer.alloc(10_001, 0x20);
    const head = `POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n`;
    const body = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n0\r\n\r\n')]);
    const r = await exchange(server.url, head, body, NEXT);
    assert.ok(r.closed, `the server keeps the connection open:\n${r.text.slice(0, 400)}`);
    assert.match(r.text, /^HTTP\/1\.1 413 /);
    assert.match(r.text, /\r\nconnection: close\r\n/i);
    assert.equal(r.text.match(/HTTP\/1\.1 /g)!.length, 1, 'one answer only');
  });

  it('keeps a connection whose request was refused after its body was read (a 400)', async () => {
    const body = Buffer.from('not json');
    const head = `POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: ${body.length}\r\n\r\n`;
    const r = await exchange(server.url, head, body, NEXT, 1000);
    assert.equal(r.closed, false);
    assert.deepEqual(r.text.match(/HTTP\/1\.1 \d+/g), ['HTTP/1.1 400', 'HTTP/1.1 200']);
  });
});
