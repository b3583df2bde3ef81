/**
 * upfleet-tuf: the client-under-test CLI of theupdateframework/tuf-conformance
 * (CLIENT-CLI.md), on the core Updater with the HTTP fetcher and a directory store.
 *
 *   upfleet-tuf --metadata-dir MD init ROOT_FILE
 *   upfleet-tuf --metadata-url URL --metadata-dir MD refresh
 *   upfleet-tuf --metadata-url URL --metadata-dir MD --target-name T [--target-name T ...]
 *               --target-dir TD --target-base-url URL download
 *
 * Exit code 0 on success, exactly 1 on any failure (the suite's protocol).
 * The reference time is the system clock (libfaketime moves it).
 * Targets land in TD as `<quoted target path>`, written only after verification,
 * and are not downloaded again when TD already holds a verified copy.
 *
 * The suite starts a process per step, so start-up counts: the updater and the HTTP
 * fetcher (node:http, node:crypto, @noble/ed25519) are imported only by the steps that
 * use them, not by `init` or `--help` (the launcher's CommonJS bundle keeps them lazy;
 * no top-level await here, which that bundle cannot hold).
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Updater } from '@upfleet/core/updater.ts';
import { DirectoryMetadataStore, writeFileAtomic } from './directory-store.ts';

const HELP = `usage:
  upfleet-tuf --metadata-dir MD init ROOT_FILE
  upfleet-tuf --metadata-url URL --metadata-dir MD refresh
  upfleet-tuf --metadata-url URL --metadata-dir MD --target-name T [--target-name T ...] --target-dir TD --target-base-url URL download
exit codes: 0 success, 1 any failure`;

class CliUsageError extends Error {}

function required(value: string | undefined, flag: string): string {
  if (value === undefined) throw new CliUsageError(`${flag} is required`);
  return value;
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'metadata-dir': { type: 'string' },
      'metadata-url': { type: 'string' },
      'target-name': { type: 'string', multiple: true },
      'target-dir': { type: 'string' },
      'target-base-url': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  const [command, ...rest] = positionals;
  const metadataDir = required(values['metadata-dir'], '--metadata-dir');
  const store = new DirectoryMetadataStore(metadataDir);
  if (command === 'init') {
    if (rest.length !== 1) throw new CliUsageError('init takes one ROOT_FILE');
    await store.writeAtomic('root.json', new Uint8Array(readFileSync(rest[0]!)));
    return;
  }
  if (rest.length !== 0) throw new CliUsageError(`unexpected arguments: ${rest.join(' ')}`);
  const [{ Updater, quoteRoleName }, { HttpFetcher }, { DEFAULT_LIMITS }] = await Promise.all([
    import('@upfleet/core/updater.ts'),
    import('../fetcher.ts'),
    import('../config.ts'),
  ]);
  const updater = new Updater({
    metadataBaseUrl: required(values['metadata-url'], '--metadata-url'),
    targetBaseUrl: values['target-base-url'],
    fetcher: new HttpFetcher(DEFAULT_LIMITS),
    store,
    now: new Date(),
    // The suite asserts the order in which the delegation search requests roles: no fetching ahead.
    prefetch: 0,
  });
  if (command === 'refresh') {
    await updater.refresh();
    return;
  }
  if (command === 'download') {
    const names = values['target-name'] ?? [];
    if (names.length === 0) throw new CliUsageError('--target-name is required');
    const targetDir = required(values['target-dir'], '--target-dir');
    required(values['target-base-url'], '--target-base-url');
    await updater.refresh();
    for (const name of names) await download(updater, name, join(targetDir, quoteRoleName(name)));
    return;
  }
  throw new CliUsageError(command === undefined ? 'no command' : `unknown command ${command}`);
}

/** Finds, verifies and stores one target at `path`, unless a verified copy is already there. */
async function download(updater: Updater, name: string, path: string): Promise<void> {
  const found = await updater.findTarget(name);
  if (!found) throw new Error(`target ${name} not found`);
  try {
    found.info.verify(name, new Uint8Array(readFileSync(path)));
    return; // cached and still the signed target
  } catch {
    /* absent or stale: download */
  }
  await writeFileAtomic(path, await updater.downloadTarget(found));
}

main(process.argv.slice(2)).then(
  () => {
    process.exitCode = 0;
  },
  (e: unknown) => {
    const err = e as Error;
    process.stderr.write(`upfleet-tuf: ${err.name}: ${err.message}${e instanceof CliUsageError ? `\n${HELP}` : ''}\n`);
    process.exitCode = 1;
  },
);
