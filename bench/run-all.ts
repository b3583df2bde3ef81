/**
 * `npm run bench`: runs every benchmark as a child process, one after the
 * other (they measure the machine, so never in parallel), collects the JSON
 * lines they print, and prints one table of figures against their goals.
 *
 * Invariants:
 * - A benchmark file that does not exist is skipped with a note; one that
 *   fails or times out is reported as such, and the others still run.
 * - Goals come from the benchmark's own line (`goals: { field: limit }`) when
 *   it gives them, else from GOALS below (copied from each benchmark's header).
 *   A limit is a maximum for sizes and times (MB, Ms, seconds, violations), a
 *   minimum otherwise (rates, ratios).
 * - Exit code: 0 when every goal with a figure is met, 1 otherwise (benchmarks
 *   are not part of the test pass/fail; this is for whoever runs them).
 *
 * Usage: npm run bench [-- --only serial,verify] [--soak] [--timeout 900]
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

interface Line {
  bench: string;
  [k: string]: unknown;
}

interface Goal {
  field: string;
  limit: number | boolean;
  /** Applies to lines matching this (e.g. one case). */
  when?: (l: Line) => boolean;
}

/** Goals stated in the benchmarks' headers, for lines that do not carry them. */
const GOALS: Record<string, Goal[]> = {
  verify: [{ field: 'ratioVsTufJs', limit: 3 }],
  // director: each line carries its own goal (bench/director.ts: issue 15).
  serial: [
    { field: 'goodputRatio', limit: 0.95, when: (l) => Number(l.ber ?? 0) === 0 },
    { field: 'goodputRatio', limit: 0.85, when: (l) => Number(l.ber ?? 0) > 0 },
    { field: 'integrity', limit: true },
  ],
  agent: [
    { field: 'idleRssMb', limit: 55 },
    { field: 'ratioToHashLimit', limit: 0.8 },
  ],
};

const BENCHES = ['verify', 'serial', 'director', 'agent', 'conformance'];

const { values } = parseArgs({ options: { only: { type: 'string' }, soak: { type: 'boolean' }, timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
if (values.help) {
  process.stdout.write('Usage: npm run bench [-- --only verify,serial] [--soak] [--timeout SECONDS]\n');
  process.exit(0);
}
const timeoutS = Number(values.timeout ?? 900);
const names = (values.only ? values.only.split(',') : BENCHES).concat(values.soak ? ['soak-power-loss'] : []);

const isMax = (field: string) => /mb|ms$|seconds|violations|bytes/i.test(field);

function run(name: string): Promise<{ lines: Line[]; error?: string; seconds: number }> {
  const file = join(import.meta.dirname, `${name}.ts`);
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], { stdio: ['ignore', 'pipe', 'pipe'], cwd: join(import.meta.dirname, '..') });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      process.stderr.write(d);
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutS * 1000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const lines: Line[] = [];
      for (const l of out.split('\n')) {
        if (!l.trim().startsWith('{')) continue;
        try {
          const j = JSON.parse(l) as Line;
          if (typeof j.bench === 'string') lines.push(j);
        } catch {
          // not a result line
        }
      }
      const seconds = (performance.now() - t0) / 1000;
      const error = signal === 'SIGKILL' ? `timed out after ${timeoutS} s` : code !== 0 ? `exit ${code}: ${err.trim().split('\n').slice(-2).join(' | ')}` : undefined;
      resolve({ lines, seconds, ...(error && { error }) });
    });
  });
}

function label(l: Line): string {
  return [l.case, l.mode, l.ber !== undefined ? `ber ${l.ber}` : undefined, l.baud !== undefined ? `${l.baud} baud` : undefined].filter((x) => x !== undefined).join(', ') || '-';
}

function format(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
  if (typeof v === 'object' && v !== null) return JSON.stringify(v);
  return String(v);
}

const loadAtStart = loadavg().map((x) => x.toFixed(2)).join(' ');
const rows: string[][] = [];
const notes: string[] = [];
let missed = 0;
for (const name of names) {
  if (!existsSync(join(import.meta.dirname, `${name}.ts`))) {
    rows.push([name, '-', '(not written yet: skipped)', '', '', '']);
    continue;
  }
  process.stderr.write(`== bench/${name}.ts\n`);
  const r = await run(name);
  if (r.error && r.lines.length === 0) {
    rows.push([name, '-', `FAILED: ${r.error}`.slice(0, 120), '', '', 'no']);
    missed += 1;
    continue;
  }
  for (const l of r.lines) {
    const own = (l.goals as Record<string, number | boolean> | undefined) ?? {};
    const goals: Goal[] = [
      ...Object.entries(own).map(([field, limit]) => ({ field, limit })),
      ...(GOALS[name] ?? []).filter((g) => !(g.field in own) && (!g.when || g.when(l))),
    ];
    const shown = new Set<string>();
    for (const g of goals) {
      const value = l[g.field];
      shown.add(g.field);
      let ok: boolean | undefined;
      let goalText: string;
      if (typeof g.limit === 'boolean') {
        ok = value === g.limit;
        goalText = `= ${g.limit}`;
      } else if (typeof value === 'number') {
        ok = isMax(g.field) ? value <= g.limit : value >= g.limit;
        goalText = `${isMax(g.field) ? '<=' : '>='} ${g.limit}`;
      } else if (typeof value === 'object' && value !== null) {
        // e.g. peak RSS per image size: every value must meet the limit.
        const nums = Object.values(value).filter((x): x is number => typeof x === 'number');
        ok = nums.length > 0 && nums.every((x) => (isMax(g.field) ? x <= (g.limit as number) : x >= (g.limit as number)));
        goalText = `${isMax(g.field) ? '<=' : '>='} ${g.limit} each`;
      } else {
        goalText = `${isMax(g.field) ? '<=' : '>='} ${g.limit}`;
      }
      // A line may say how far this machine lets its figure go at all (bench/ceiling.ts).
      if (typeof l.ceilingOnThisMachine === 'number') goalText += ` (ceiling here ${format(l.ceilingOnThisMachine)})`;
      if (ok === false) missed += 1;
      rows.push([name, label(l), g.field, format(value), goalText, ok === undefined ? '?' : ok ? 'yes' : 'NO']);
    }
    // Ratios against the run's own baseline are the headline figures, goal or not.
    for (const [k, v] of Object.entries(l)) {
      if (!k.startsWith('ratio') || shown.has(k) || typeof v !== 'number') continue;
      shown.add(k);
      rows.push([name, label(l), k, format(v), '(none stated)', '-']);
    }
    // The other figures, without a goal.
    const figures = Object.entries(l).filter(([k, v]) => !['bench', 'case', 'mode', 'goals', 'ber', 'baud', 'ceilingOnThisMachine'].includes(k) && !shown.has(k) && (typeof v === 'number' || typeof v === 'boolean'));
    if (figures.length > 0) notes.push(`${name} (${label(l)}): ${figures.map(([k, v]) => `${k}=${format(v)}`).join(' ')}`);
  }
  if (r.error) rows.push([name, '-', `(then failed: ${r.error})`.slice(0, 120), '', '', 'no']);
  rows.push([name, '-', `ran in ${r.seconds.toFixed(0)} s`, '', '', '']);
}

const header = ['bench', 'case', 'figure', 'value', 'goal', 'met'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
console.log('\n' + line(header));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows) console.log(line(r));
if (notes.length > 0) console.log('\nOther figures:\n' + notes.map((n) => `  ${n}`).join('\n'));
// Figures are only comparable on a quiet machine (load under 0.5 at the start).
console.log(`\nload average (1, 5, 15 min): ${loadAtStart} at the start, ${loadavg().map((x) => x.toFixed(2)).join(' ')} at the end`);
console.log(missed === 0 ? '\nall goals met' : `\n${missed} goal(s) missed or benchmark(s) failed`);
process.exitCode = missed === 0 ? 0 : 1;
