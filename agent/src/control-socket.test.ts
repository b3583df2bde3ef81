import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentRunningError, ControlSocketError, DaemonError, NotProvisionedError } from './errors.ts';
import { askDaemon, controlSocketPath, listenControl, type ControlHandlers } from './control-socket.ts';
import { openDb } from './db.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'upfleet-ctl-'));
  dirs.push(d);
  return d;
}

const handlers: ControlHandlers = {
  status: async () => ({ state: 'idle' }),
  check: async () => {
    throw new NotProvisionedError('primary key /x');
  },
};

describe('control socket', () => {
  it('serves status, carries a failed check as the daemon\'s typed error, and is 0600', async () => {
    const dir = tempDir();
    const db = openDb(dir);
    const server = await listenControl({ path: controlSocketPath(dir), db, handlers });
    try {
      assert.equal(statSync(server.path).mode & 0o777, 0o600);
      assert.deepEqual(await askDaemon(server.path, 'status'), { state: 'idle' });
      await assert.rejects(askDaemon(server.path, 'check'), (e: unknown) => {
        assert.ok(e instanceof DaemonError);
        assert.equal(e.name, 'NotProvisionedError');
        assert.equal(e.code, 'NOT_PROVISIONED');
        assert.match(e.message, /primary key \/x/);
        return true;
      });
    } finally {
      await server.close();
      db.close();
    }
  });

  it('refuses a second daemon with AgentRunningError naming the socket', async () => {
    const dir = tempDir();
    const db = openDb(dir);
    const other = openDb(dir);
    const first = await listenControl({ path: controlSocketPath(dir), db, handlers });
    try {
      await assert.rejects(listenControl({ path: controlSocketPath(dir), db: other, handlers }), (e: unknown) => {
        assert.ok(e instanceof AgentRunningError);
        assert.equal(e.socketPath, controlSocketPath(dir));
        return true;
      });
      assert.deepEqual(await askDaemon(first.path, 'status'), { state: 'idle' }, 'the first still answers');
    } finally {
      await first.close();
      db.close();
      other.close();
    }
  });

  it('finds no daemon when there is no socket file', async () => {
    assert.equal(await askDaemon(controlSocketPath(tempDir()), 'status'), undefined);
  });

  it('refuses a storage directory whose socket path cannot be bound, naming it', async () => {
    const dir = join(tempDir(), 'x'.repeat(100));
    const db = openDb(dir);
    try {
      await assert.rejects(listenControl({ path: controlSocketPath(dir), db, handlers }), (e: unknown) => {
        assert.ok(e instanceof ControlSocketError);
        assert.equal(e.socketPath, controlSocketPath(dir));
        return true;
      });
    } finally {
      db.close();
    }
  });

  it('reports an answer that is not one as ControlSocketError', async () => {
    const path = controlSocketPath(tempDir());
    const server = createServer((s) => s.end('hello\n'));
    await new Promise<void>((r) => server.listen(path, r));
    try {
      await assert.rejects(askDaemon(path, 'status'), (e: unknown) => e instanceof ControlSocketError && e.socketPath === path && /not a JSON answer/.test(e.reason));
    } finally {
      server.close();
    }
  });
});
