/**
 * The server side of a repository directory: the SQLite index, the blob
 * store and the publisher over them. Opening it rolls back whatever a killed
 * process left unfinished (SQLite does; stray temp blobs are removed), and an
 * empty index is bootstrapped from the working copy that `init` wrote.
 */
import { mkdirSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { BlobStore, type BlobInfo } from './blob-store.ts';
import { IndexDb } from './index-db.ts';
import type { OnlineKeyring } from './online-keys.ts';
import { Publisher, type PublishResult } from './publisher.ts';
import type { Workspace } from './workspace.ts';

export interface RepoStoreOptions {
  workspace: Workspace;
  keyring: OnlineKeyring;
  snapshotExpiry: number;
  timestampExpiry: number;
  pauseBeforeCommitMs?: number;
  onPause?: () => void;
}

export class RepoStore {
  readonly db: IndexDb;
  readonly blobs: BlobStore;
  readonly publisher: Publisher;

  constructor(options: RepoStoreOptions) {
    mkdirSync(options.workspace.serverDir, { recursive: true });
    this.db = new IndexDb(options.workspace.indexFile);
    this.blobs = new BlobStore(options.workspace.blobsDir);
    this.blobs.removeTemporaryFiles();
    this.publisher = new Publisher({ db: this.db, ...options });
  }

  /** Stores an uploaded image (not yet published). @throws UploadTooLargeError */
  async addImage(source: AsyncIterable<Uint8Array> | Readable, maxLength: number): Promise<BlobInfo> {
    const info = await this.blobs.write(source, maxLength);
    this.db.addImage(info);
    return info;
  }

  /** Publishes root(s) and targets from the working copy into an empty index. */
  bootstrap(workspace: Workspace, now: Date): PublishResult | undefined {
    if (this.publisher.state()) return undefined;
    const versions = workspace.rootVersions();
    const targets = workspace.readMetadata('targets.json');
    if (versions.length === 0 || !targets) return undefined;
    return this.publisher.publish({ roots: versions.map((v) => workspace.readMetadata(`${v}.root.json`)!), targets }, now);
  }

  close(): void {
    this.db.close();
  }
}
