/**
 * A keep-alive connection that got a 413 is closed: the answer says
 * `Connection: close` and the server ends the socket, instead of leaving the
 * unread body to stall (or be parsed as) the next request. Raw TCP on loopback,
 * so the test sees exactly what a client on that connection sees.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { exchange } from '../../../test/support/raw-exchange.ts';
import { harness, ADMIN_TOKEN, type Harness } from '../testing/harness.ts';
import { MAX_BODY } from './router.ts';

describe('director: connection after a 413', () => {
  let h: Harness;
  before(async () => (h = await harness()));
  after(() => h.close());

  for (const [name, size] of [['left unread (8 MiB)', 8 << 20], ['just over the limit', MAX_BODY + 1]] as const) {
    it(`closes the connection when the body is ${name}, answering nothing more on it`, async () => {
      const head = `POST /api/v1/admin/campaigns HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`;
      const r = await exchange(h.director.url, head, Buffer.alloc(size, 0x20), 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.ok(r.closed, `the server keeps the connection open:\n${r.text.slice(0, 400)}`);
      assert.match(r.text, /^HTTP\/1\.1 413 /);
      assert.match(r.text, /\r\nconnection: close\r\n/i);
      assert.match(r.text, /"code":"BODY_TOO_LARGE"/);
      assert.equal(r.text.match(/HTTP\/1\.1 /g)!.length, 1, 'one answer only');
    });
  }

  it('keeps a connection whose request was read to its end', async () => {
    const body = Buffer.from('{}');
    const head = `POST /api/v1/admin/campaigns HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const r = await exchange(h.director.url, head, body, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 1000);
    assert.equal(r.closed, false);
    assert.equal(r.text.match(/HTTP\/1\.1 /g)!.length, 2, r.text);
  });
});
