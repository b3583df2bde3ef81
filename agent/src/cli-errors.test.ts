/**
 * How `upfleet-agent` reports failures, as a user (or a script with --json)
 * sees them: the real executable against a real director and image repository
 * on loopback.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { realWorld, type RealWorld } from './testing/real-world.ts';
import { runAgentCli } from './testing/agent-cli.ts';

/** The CLI with no provisioning token from the environment: only what its config says. */
const agent = (args: string[]) => runAgentCli(args, { UPFLEET_LOG_LEVEL: 'silent', UPFLEET_PROVISIONING_TOKEN: undefined });

describe('upfleet-agent failure reports', () => {
  let w: RealWorld;
  /** A copy of the world's config with `edit` applied. */
  const variant = (name: string, edit: (c: any) => void): string => {
    const c = JSON.parse(readFileSync(w.configPath, 'utf8'));
    edit(c);
    c.storageDir = join(w.dir, `var-${name}`);
    c.keyPath = join(w.dir, `var-${name}`, 'primary.key');
    const path = join(w.dir, `${name}.json`);
    writeFileSync(path, JSON.stringify(c));
    return path;
  };

  before(async () => (w = await realWorld({ deviceId: 'cli-errors-1' })));
  after(async () => w?.close());

  it('a refused provisioning prints the director\'s message, not its raw JSON; --json prints a JSON error object', async () => {
    const config = variant('wrong-token', (c) => (c.provisioning.token = 'not-the-token'));
    const message = /^the director refused \S+\/register: the bearer token is not the fleet provisioning token \(WRONG_PROVISIONING_TOKEN, HTTP 403\)$/;
    const [plain, json] = await Promise.all([agent(['provision', '--config', config]), agent(['provision', '--json', '--config', config])]);
    assert.equal(plain.code, 1);
    assert.equal(plain.stdout, '');
    assert.doesNotMatch(plain.stderr, /\{"error"/);
    assert.match(plain.stderr.trim(), /^upfleet-agent: DirectorRequestError: the director refused .*\(WRONG_PROVISIONING_TOKEN, HTTP 403\)$/);
    assert.equal(json.code, 1);
    const out = JSON.parse(json.stdout) as { error: { name: string; code: string; message: string } };
    assert.deepEqual([out.error.name, out.error.code], ['DirectorRequestError', 'DIRECTOR_REQUEST']);
    assert.match(out.error.message, message);
  });

  it('--json prints a JSON error object naming the field for a bad config too', async () => {
    const config = variant('bad-poll', (c) => (c.pollIntervalSeconds = 'often'));
    const r = await agent(['status', '--json', '--config', config]);
    assert.equal(r.code, 1);
    const out = JSON.parse(r.stdout) as { error: { name: string; code: string; field: string } };
    assert.deepEqual([out.error.name, out.error.field], ['ConfigError', 'pollIntervalSeconds']);
  });

  it('a serial port that cannot be opened names the ECU and the config field', async () => {
    const config = variant('bad-port', (c) => {
      c.ecus.secondaries = [{ serial: 'brake-x', hardwareId: 'brake', port: '/nonexistent/ttyUSB9', baud: 115200, verification: 'partial' }];
    });
    const r = await agent(['status', '--config', config]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /secondary +brake-x +brake +unreachable: ECU brake-x: cannot open serial port \/nonexistent\/ttyUSB9 \(ecus\.secondaries\[0\]\.port\): /);
  });
});
