/**
 * The shared loopback listener: what every test server that uses it relies on,
 * with real sockets.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { connect, createServer } from 'node:net';
import { freePort, listenLoopback } from './loopback.ts';

/** Resolves with the connect error code, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

describe('listenLoopback', () => {
  it('listens on 127.0.0.1 and names the port in an http:// URL', async () => {
    const server = http.createServer((_req, res) => res.end('hello'));
    const listening = await listenLoopback(server);
    try {
      assert.deepEqual(server.address(), { address: '127.0.0.1', family: 'IPv4', port: listening.port });
      assert.equal(listening.url, `http://127.0.0.1:${listening.port}`);
      assert.equal(await (await fetch(`${listening.url}/x`)).text(), 'hello');
    } finally {
      await listening.close();
    }
  });

  it('close() ends a connection whose request is still unanswered, and stops listening', async () => {
    let received!: () => void;
    const requestIn = new Promise<void>((r) => (received = r));
    const server = http.createServer(() => received()); // never answers
    const listening = await listenLoopback(server);
    const request = fetch(listening.url).catch((e: Error) => e);
    await requestIn;
    const outcome = await Promise.race([
      listening.close().then(() => 'closed'),
      new Promise((r) => setTimeout(r, 2000, 'still waiting for the open request')),
    ]);
    assert.equal(outcome, 'closed');
    assert.ok((await request) instanceof Error, 'the client saw its connection end');
    assert.equal(await tryConnect(listening.port), 'ECONNREFUSED');
  });

  it('close() called again returns the same promise instead of failing', async () => {
    const listening = await listenLoopback(http.createServer());
    const first = listening.close();
    assert.equal(listening.close(), first);
    await first;
  });

  it('listens on a given port, and rejects with EADDRINUSE when it is taken', async () => {
    const port = await freePort();
    const first = await listenLoopback(createServer(), port);
    try {
      assert.equal(first.port, port);
      await assert.rejects(listenLoopback(createServer(), port), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE');
    } finally {
      await first.close();
    }
  });
});

describe('freePort', () => {
  it('names a loopback port nothing listens on', async () => {
    assert.equal(await tryConnect(await freePort()), 'ECONNREFUSED');
  });
});
