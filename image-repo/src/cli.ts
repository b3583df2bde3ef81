/** The `upfleet-repo` process: runs the command line against this process's streams and environment. */
import { runCli } from './cli-program.ts';

process.exitCode = await runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
  errIsTTY: process.stderr.isTTY === true,
});
