// Runs the test files given as arguments in the given order, as `node --test` would
// (one process per file, the same reporter: spec on a terminal, TAP otherwise), but
// without sorting them: `node --test` starts files in name order, whatever order
// they are passed in. Start it with `node --import tsx`: the file processes inherit
// this process's execArgv.
//
// Usage: node --import tsx scripts/test-files.mjs CONCURRENCY TIMEOUT_MS FILE...
import { run } from 'node:test';
import { spec, tap } from 'node:test/reporters';
import { resolve } from 'node:path';

const [concurrency, timeout, ...files] = process.argv.slice(2);
run({ files: files.map((f) => resolve(f)), concurrency: Number(concurrency), timeout: Number(timeout) })
  // As `node --test`: a failing test fails the run, a failing todo test does not.
  .on('test:fail', (data) => {
    if (!data.todo) process.exitCode = 1;
  })
  .compose(process.stdout.isTTY ? new spec() : tap)
  .pipe(process.stdout);
