/**
 * Where the offline tool publishes: the repository directory's own index
 * (local; the server serving DIR sees the change at once, SQLite serialises
 * writers) or a remote server through its upload API. Both hand back a
 * verified current state to edit, take images, and publish a signed batch;
 * the remote one checks what it fetches against the root this directory
 * pinned last, so a compromised server cannot get stale or forged targets
 * re-signed with the offline keys.
 */
import { createReadStream, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Metadata, bytesEqual, fromUtf8, type Targets } from '@upfleet/core';
import type { BlobInfo } from './blob-store.ts';
import { RemoteError, WorkspaceError } from './errors.ts';
import { countBytes, type ImageProgress } from './image-progress.ts';
import { KeyDirKeyring } from './online-keys.ts';
import type { PublishBatch, PublishResult } from './publisher.ts';
import { RepoStore } from './repo-store.ts';
import { applyProposal, type RepoState } from './verify.ts';
import type { Workspace } from './workspace.ts';

export interface Backend {
  readonly description: string;
  /** The published state, verified; undefined for an empty repository. */
  state(now: Date): Promise<RepoState | undefined>;
  /** Published version of every role, snapshot and timestamp included. */
  versions(): Promise<Record<string, number>>;
  /** Expiry dates of the published snapshot and timestamp (the online roles), for status. */
  onlineExpiries(): Promise<Record<string, string>>;
  /** Stores or uploads FILE; `onProgress` hears the bytes read from it, then `finished` once the repository holds it. */
  uploadImage(name: string, file: string, onProgress?: (p: ImageProgress) => void): Promise<BlobInfo>;
  publish(batch: PublishBatch, now: Date): Promise<PublishResult>;
  close(): void;
}

export class LocalBackend implements Backend {
  readonly description: string;
  #store: RepoStore;

  /** `onlinePassphrase`: publishing into DIR's own index signs snapshot and timestamp with DIR/keys/online. */
  constructor(workspace: Workspace, onlinePassphrase: () => string) {
    const { expiries } = workspace.settings();
    this.description = workspace.dir;
    this.#store = new RepoStore({
      workspace,
      keyring: new KeyDirKeyring(workspace.onlineKeysDir, onlinePassphrase),
      snapshotExpiry: expiries.snapshot,
      timestampExpiry: expiries.timestamp,
    });
  }

  async state(): Promise<RepoState | undefined> {
    return this.#store.publisher.state();
  }

  async versions(): Promise<Record<string, number>> {
    return this.#store.publisher.versions();
  }

  async onlineExpiries(): Promise<Record<string, string>> {
    const expiries: Record<string, string> = {};
    for (const role of ['snapshot', 'timestamp'] as const) {
      const file = this.#store.db.currentFile(role);
      if (file) expiries[role] = Metadata.fromBytes(file.bytes, role).signed.expires;
    }
    return expiries;
  }

  async uploadImage(name: string, file: string, onProgress?: (p: ImageProgress) => void): Promise<BlobInfo> {
    const info = await this.#store.addImage(readCounting(name, file, 'hashing', onProgress), Number.MAX_SAFE_INTEGER);
    onProgress?.({ phase: 'hashing', name, done: info.length, total: info.length, finished: true });
    return info;
  }

  async publish(batch: PublishBatch, now: Date): Promise<PublishResult> {
    return this.#store.publisher.publish(batch, now);
  }

  close(): void {
    this.#store.close();
  }
}

export class RemoteBackend implements Backend {
  readonly description: string;

  constructor(
    readonly url: string,
    private readonly token: string,
    private readonly workspace: Workspace,
  ) {
    this.url = url.replace(/\/+$/, '');
    this.description = this.url;
  }

  /** @throws RemoteError, and the verification errors of a state that does not verify. */
  async state(now: Date): Promise<RepoState | undefined> {
    const first = await this.get('/metadata/1.root.json', true);
    if (!first) return undefined;
    const roots = [Metadata.fromBytes(first, 'root', '1.root.json')];
    for (;;) {
      const next = await this.get(`/metadata/${roots.length + 1}.root.json`, true);
      if (!next) break;
      roots.push(Metadata.fromBytes(next, 'root', `${roots.length + 1}.root.json`));
    }
    this.checkPinnedRoot(roots);
    const timestamp = Metadata.fromBytes((await this.get('/metadata/timestamp.json'))!, 'timestamp');
    const snapshot = Metadata.fromBytes((await this.get(`/metadata/${timestamp.signed.snapshotMeta.version}.snapshot.json`))!, 'snapshot');
    let targets: Metadata<Targets> | undefined;
    const delegated = new Map<string, Metadata<Targets>>();
    for (const [file, meta] of Object.entries(snapshot.signed.meta)) {
      const role = file.replace(/\.json$/, '');
      const md = Metadata.fromBytes((await this.get(`/metadata/${meta.version}.${encodeURIComponent(role)}.json`))!, 'targets', file);
      if (role === 'targets') targets = md;
      else delegated.set(role, md);
    }
    if (!targets) throw new RemoteError(this.url, 200, 'BAD_SNAPSHOT', 'snapshot does not list targets.json');
    // The same checks the server runs, images aside: signatures, delegations, names.
    return applyProposal(undefined, { roots, targets, delegated }, now, undefined).state;
  }

  /** The chain must contain, byte for byte, the newest root this directory signed or fetched. */
  private checkPinnedRoot(roots: Metadata[]): void {
    const versions = this.workspace.rootVersions();
    const pinned = versions.at(-1);
    if (pinned === undefined) return;
    const local = Metadata.fromBytes(this.workspace.readMetadata(`${pinned}.root.json`)!, 'root');
    const remote = roots[pinned - 1];
    if (!remote || !bytesEqual(remote.signedBytes(), local.signedBytes())) {
      throw new WorkspaceError(`${this.url} does not serve the root version ${pinned} pinned in ${this.workspace.metadataDir}`);
    }
  }

  async versions(): Promise<Record<string, number>> {
    const body = await this.get('/healthz');
    return (JSON.parse(fromUtf8(body!)) as { versions: Record<string, number> }).versions;
  }

  async onlineExpiries(): Promise<Record<string, string>> {
    const timestamp = Metadata.fromBytes((await this.get('/metadata/timestamp.json'))!, 'timestamp');
    const snapshot = Metadata.fromBytes((await this.get(`/metadata/${timestamp.signed.snapshotMeta.version}.snapshot.json`))!, 'snapshot');
    return { snapshot: snapshot.signed.expires, timestamp: timestamp.signed.expires };
  }

  async uploadImage(name: string, file: string, onProgress?: (p: ImageProgress) => void): Promise<BlobInfo> {
    const size = statSync(file).size;
    const body = await this.send('PUT', `/api/v1/images/${name.split('/').map(encodeURIComponent).join('/')}`, {
      stream: () => readCounting(name, file, 'uploading', onProgress),
      length: size,
      type: 'application/octet-stream',
    });
    const reply = JSON.parse(body) as { length: number; hashes: { sha256: string; sha512: string } };
    onProgress?.({ phase: 'uploading', name, done: reply.length, total: reply.length, finished: true });
    return { length: reply.length, ...reply.hashes };
  }

  async publish(batch: PublishBatch): Promise<PublishResult> {
    const json = JSON.stringify({
      roots: batch.roots?.map((b) => JSON.parse(fromUtf8(b))),
      targets: batch.targets && JSON.parse(fromUtf8(batch.targets)),
      delegated: batch.delegated && Object.fromEntries(Object.entries(batch.delegated).map(([k, b]) => [k, JSON.parse(fromUtf8(b))])),
    });
    return JSON.parse(await this.send('POST', '/api/v1/publish', { data: Buffer.from(json), type: 'application/json' })) as PublishResult;
  }

  close(): void {}

  private async get(path: string, optional = false): Promise<Uint8Array | undefined> {
    let res: Response;
    try {
      res = await fetch(this.url + path);
    } catch (error) {
      throw unreachable(this.url + path, error);
    }
    if (res.status === 404 && optional) return undefined;
    if (!res.ok) throw new RemoteError(this.url + path, res.status, 'HTTP', res.statusText);
    return new Uint8Array(await res.arrayBuffer());
  }

  private send(
    method: string,
    path: string,
    body: { stream?: () => NodeJS.ReadableStream; data?: Buffer; length?: number; type: string },
  ): Promise<string> {
    return new Promise((resolve, reject) => {
      const request = this.url.startsWith('https:') ? httpsRequest : httpRequest;
      const req = request(
        this.url + path,
        {
          method,
          headers: {
            authorization: `Bearer ${this.token}`,
            'content-type': body.type,
            'content-length': body.data?.byteLength ?? body.length ?? 0,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if (res.statusCode && res.statusCode < 300) return resolve(text);
            let code = 'HTTP';
            let message = text;
            try {
              const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
              code = parsed.error?.code ?? code;
              message = parsed.error?.message ?? message;
            } catch {
              // not a JSON error body: keep the text
            }
            reject(new RemoteError(this.url + path, res.statusCode ?? 0, code, message));
          });
        },
      );
      // A server refusing early (401, 413) may reset the upload; its answer is the better error.
      req.on('error', (error) => setTimeout(() => reject(unreachable(this.url + path, error)), 200));
      if (body.data) req.end(body.data);
      else if (body.stream) {
        const s = body.stream();
        s.on('error', reject);
        s.pipe(req);
      } else req.end();
    });
  }
}

/** FILE's bytes, reporting progress as they are read. */
function readCounting(name: string, file: string, phase: ImageProgress['phase'], onProgress?: (p: ImageProgress) => void): Readable {
  const stream = createReadStream(file);
  if (!onProgress) return stream;
  let total: number | undefined;
  let done = 0;
  // Sized once the first chunk shows the file opened, so a missing file fails as it always did.
  return Readable.from(countBytes(stream, (n) => onProgress({ phase, name, done: (done += n), total: (total ??= statSync(file).size) })), { objectMode: false });
}

/** A transport failure (refused connection, reset, bad TLS) as a typed error naming the URL. */
function unreachable(url: string, error: unknown): RemoteError {
  const cause = (error as { cause?: Error }).cause ?? (error as Error);
  return new RemoteError(url, 0, 'UNREACHABLE', `cannot reach the server: ${cause.message}`);
}
