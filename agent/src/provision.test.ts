/**
 * The device key is the device's identity: `upfleet-agent provision` makes it
 * once, a later provision (a re-run after a slot switch, a retried first boot)
 * reuses it and says so, and the real director accepts the device again. A
 * registered device whose key went missing refuses to make another.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { readPublicKey } from '@upfleet/core';
import { realWorld, type RealWorld } from './testing/real-world.ts';
import { runAgentCli } from './testing/agent-cli.ts';

const agent = (w: RealWorld, args: string[]) => runAgentCli([...args, '--config', w.configPath], { UPFLEET_LOG_LEVEL: 'info' });

describe('provision keeps the device key', () => {
  let w: RealWorld;
  before(async () => {
    w = await realWorld({ deviceId: 'vehicle-prov' });
  });
  after(async () => {
    await w?.close();
  });

  it('a second provision reuses the key, says so, and the director accepts the device with it', async () => {
    const first = await agent(w, ['provision', '--json']);
    assert.equal(first.code, 0, first.stderr);
    const made = JSON.parse(first.stdout) as { status: string; keyid: string; key: string };
    assert.equal(made.key, 'created');
    assert.match(first.stderr, /"msg":"device key created"/);
    const keyFile = readFileSync(w.config.keyPath);

    const second = await agent(w, ['provision']);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, new RegExp(`^provisioned vehicle-prov: active, primary key ${made.keyid} \\(existing key reused\\)$`, 'm'));
    assert.match(second.stderr, /"msg":"existing device key reused"/);
    assert.deepEqual(readFileSync(w.config.keyPath), keyFile, 'the key file is untouched');

    const third = await agent(w, ['provision', '--json']);
    assert.deepEqual(JSON.parse(third.stdout), { status: 'active', keyid: made.keyid, key: 'reused' });
    // The director takes this key's manifests: the device is the same one.
    const check = await agent(w, ['check', '--once', '--json']);
    assert.equal(check.code, 0, check.stderr);
    assert.equal(JSON.parse(check.stdout).undelivered, 0);
    const device = await w.device();
    const publicHex = readPublicKey(new Uint8Array(keyFile)).keyval.public!;
    assert.equal(readPublicKey(new Uint8Array(keyFile)).keyid, made.keyid);
    assert.ok(JSON.stringify(device).includes(publicHex), 'the director knows the device by the same public key');
  });

  it('a registered device whose key is gone does not make a new one', async () => {
    renameSync(w.config.keyPath, `${w.config.keyPath}.away`);
    try {
      const r = await agent(w, ['provision', '--json']);
      assert.equal(r.code, 1);
      const error = (JSON.parse(r.stdout) as { error: { name: string; field: string; message: string } }).error;
      assert.equal(error.name, 'ConfigError');
      assert.equal(error.field, 'keyPath');
      assert.match(error.message, /registered with key .* is missing/);
      assert.equal(existsSync(w.config.keyPath), false);
    } finally {
      renameSync(`${w.config.keyPath}.away`, w.config.keyPath);
    }
  });
});
