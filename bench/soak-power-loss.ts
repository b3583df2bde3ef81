/**
 * bench:soak-power-loss — the power-loss harness (test/support/power-loss.ts)
 * for longer: the agent CLI is SIGKILLed at seeded random moments of updates,
 * many more times than the CI-sized test, and restarted each time.
 *
 * Prints one JSON line: {"bench":"soak-power-loss","kills",...,"violations"}.
 * Goal: violations = 0 (every ECU on its old or new image, never a partial one;
 * every manifest accepted by the director exactly once). Exit code 1 otherwise.
 * Usage: node --import tsx bench/soak-power-loss.ts [--kills 300] [--seed N] [--verbose]
 */
import { parseArgs } from 'node:util';
import { runPowerLoss } from '../test/support/power-loss.ts';

const { values } = parseArgs({ options: { kills: { type: 'string' }, seed: { type: 'string' }, verbose: { type: 'boolean' } } });
const kills = Number(values.kills ?? 300);
const seed = Number(values.seed ?? Date.now() % 1_000_000);
if (!Number.isSafeInteger(kills) || kills < 1 || !Number.isSafeInteger(seed)) {
  process.stderr.write('soak-power-loss: --kills and --seed take integers\n');
  process.exit(2);
}
const r = await runPowerLoss({ kills, seed, ...(values.verbose && { log: (l: string) => process.stderr.write(l + '\n') }) });
console.log(JSON.stringify({
  bench: 'soak-power-loss', seed, kills: r.kills, restarts: r.restarts, updatesSucceeded: r.updates.succeeded, updatesFailed: r.updates.failed,
  manifests: r.manifests, killsByState: r.killsByState, seconds: Math.round(r.durationMs / 1000), violations: r.violations.length,
  goals: { violations: 0 },
}));
for (const v of r.violations) process.stderr.write(`violation: ${v}\n`);
process.exitCode = r.violations.length === 0 ? 0 : 1;
