/**
 * How a command line printed for the user (the demo's "Try:" lines) names one of the
 * project's CLIs, so that it runs when pasted into a shell in any directory:
 * - the bare name when the user's PATH already finds this checkout's command (after the
 *   documented `npm install -g .`);
 * - else the absolute path of the bin file in this checkout, shell-quoted.
 * Never `npx <name>`: outside the checkout npx would ask the npm registry for an unscoped
 * package of that name. PATH entries inside the checkout (node_modules/.bin, which
 * `npm run` puts first) do not count: the user's own shell does not have them.
 * The bin files are the ones the root package.json declares, the same list `npm install -g .` links.
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { delimiter, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = realpathSync(fileURLToPath(new URL('..', import.meta.url)));
const BINS = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin;

/**
 * @param name a command the root package.json declares (upfleet-repo, upfleet-director, ...).
 * @param path the PATH to look in (default: this process's).
 * @throws Error for a name the root package.json does not declare
 */
export function cliCommand(name: string, path = process.env.PATH ?? ''): string {
  const rel = BINS[name];
  if (rel === undefined) throw new Error(`${name} is not a bin of the root package.json`);
  const file = join(ROOT, rel);
  for (const dir of path.split(delimiter)) {
    if (dir === '' || realOrSelf(dir).startsWith(ROOT + sep)) continue;
    const candidate = join(dir, name);
    if (!statSync(candidate, { throwIfNoEntry: false })?.isFile()) continue;
    // The first match is what the shell runs: only this checkout's command will do.
    return realOrSelf(candidate) === file ? name : shellQuote(file);
  }
  return shellQuote(file);
}

function realOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
