/**
 * The published repository as plain files, for a stock web server, a CDN or
 * an object store: `OUT/metadata/<N.role.json | root.json | timestamp.json>`
 * and `OUT/targets/<dir/><sha256>.<base>` (and `<sha512>.<base>`), the URLs
 * the server answers and every TUF client asks for.
 *
 * Theory of operation: versioned metadata files and hash-named images are
 * immutable, so they are written once (images hard-linked from the blob store,
 * copied when a link is impossible) and never touched again. `root.json` and
 * then `timestamp.json` are the only files that change; each is replaced
 * atomically (temp + rename) and `timestamp.json` is written last, so a client
 * that reads the new timestamp finds every file it leads to already in place.
 * The list of what to write is read in one SQLite read transaction: the tree
 * is always one published version plus, at worst, files of a newer one that
 * no timestamp names yet. Running it again only adds what is missing.
 *
 * What stays dynamic (docs/deployment.md): uploads and publishing, and the
 * online re-signing of timestamp (and snapshot) before they expire, which
 * lands in the tree only when an export runs again (`serve --export` does so
 * after every publish and on its expiry timer).
 */
import { copyFileSync, existsSync, linkSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import type { BlobStore } from './blob-store.ts';
import type { IndexDb } from './index-db.ts';
import { BadNameError } from './errors.ts';
import { checkTargetName } from './names.ts';
import { writeAtomic } from './workspace.ts';

export interface ExportResult {
  /** Metadata files and image links written by this run (0 when the tree was current). */
  written: number;
  /** The timestamp version the tree now leads to (0 for an empty repository). */
  timestampVersion: number;
}

/** Metadata file names as the server answers them: `N.<role>.json`, a role name being one plain segment. */
const METADATA_FILE = /^\d+\.[A-Za-z0-9_+-][A-Za-z0-9._+-]*\.json$/;

/**
 * Brings `outDir` up to the committed state of the index.
 * @throws BadNameError for a name in the index no server would serve (a corrupt index); fs errors as they are
 */
export function exportStaticTree(db: IndexDb, blobs: BlobStore, outDir: string): ExportResult {
  const plan = db.readTransaction(() => ({
    files: db.fileNames(),
    targets: db.publishedTargets(),
    root: db.currentFile('root'),
    timestamp: db.currentFile('timestamp'),
    timestampVersion: db.roles().find((r) => r.name === 'timestamp')?.version ?? 0,
  }));
  let written = 0;
  for (const t of plan.targets) {
    checkTargetName(t.name);
    const slash = t.name.lastIndexOf('/');
    const [dir, base] = [t.name.slice(0, slash + 1), t.name.slice(slash + 1)];
    for (const hash of [t.sha256, t.sha512]) {
      if (placeImage(blobs.path(t.sha256), join(outDir, 'targets', `${dir}${hash}.${base}`))) written++;
    }
  }
  const metadataDir = join(outDir, 'metadata');
  for (const name of plan.files) {
    if (!METADATA_FILE.test(name)) throw new BadNameError('role', name, 'not a metadata file name (N.<role>.json) in the index');
    const path = join(metadataDir, name);
    if (existsSync(path)) continue;
    writeAtomic(path, db.file(name)!.bytes);
    written++;
  }
  for (const [name, file] of [['root.json', plan.root], ['timestamp.json', plan.timestamp]] as const) {
    if (!file) continue;
    const path = join(metadataDir, name);
    if (existsSync(path) && readFileSync(path).equals(file.bytes)) continue;
    writeAtomic(path, file.bytes);
    written++;
  }
  return { written, timestampVersion: plan.timestampVersion };
}

/** Hard-links (or copies, across file systems) a blob to `dest` unless it is there; true when it placed it. */
function placeImage(blob: string, dest: string): boolean {
  if (existsSync(dest)) return false;
  mkdirSync(dirname(dest), { recursive: true });
  const tmp = `${dest}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    linkSync(blob, tmp);
  } catch {
    copyFileSync(blob, tmp);
  }
  renameSync(tmp, dest);
  return true;
}
