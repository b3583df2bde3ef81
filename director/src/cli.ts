/** The `upfleet-director` process: runs the command line against this process's streams and environment. */
import { runCli } from './cli-program.ts';

const code = await runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
});
// `serve` keeps the process alive after returning 0; everything else ends here.
if (code !== 0) process.exit(code);
