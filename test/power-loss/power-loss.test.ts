/**
 * Power loss during updates: the agent CLI (`upfleet-agent check --once`) is
 * killed with SIGKILL at seeded random moments, at least 50 times, and
 * restarted each time (harness: test/support/power-loss.ts; the long soak is
 * bench/soak-power-loss.ts). Every ECU must end on its old or its new verified
 * image, never a partial one, and every manifest must reach the director
 * exactly once.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runPowerLoss } from '../support/power-loss.ts';

describe('power loss', () => {
  it('survives 50 kills at random points of updates', { timeout: 240_000 }, async () => {
    const lines: string[] = [];
    const r = await runPowerLoss({ kills: 50, seed: Number(process.env.UPFLEET_SEED ?? 20261122), log: (l) => lines.push(l) });
    if (process.env.UPFLEET_VERBOSE) console.log(lines.join('\n'));
    assert.deepEqual(r.violations, [], lines.join('\n'));
    assert.ok(r.kills >= 50, `${r.kills} kills`);
    assert.ok(r.updates.succeeded >= 1, `updates: ${JSON.stringify(r.updates)}`);
    assert.ok(r.manifests > r.updates.succeeded, 'manifests were accepted');
    // The kills landed in more than one persisted state (not all at start-up).
    assert.ok(Object.keys(r.killsByState).length >= 3, `kills by state: ${JSON.stringify(r.killsByState)}`);
    console.log(`power loss: ${JSON.stringify({ kills: r.kills, restarts: r.restarts, updates: r.updates, manifests: r.manifests, killsByState: r.killsByState, seconds: Math.round(r.durationMs / 1000) })}`);
  });
});
