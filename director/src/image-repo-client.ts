/**
 * The director's view of the image repository: targets verified by the core
 * Updater (full TUF workflow, delegations, hardware-ID filters). A verified view
 * is reused for `cacheMs`, then the next lookup refreshes with a new Updater
 * (one refresh per Updater); concurrent lookups share one refresh; a name the
 * cached view lacks triggers one refresh before the answer is "missing".
 * Trust starts from a given root.json, or, failing that, from the repository's
 * own 1.root.json fetched once (trust on first use, logged).
 */
import { mkdirSync, openSync, fsyncSync, closeSync, writeSync, renameSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { DownloadError, HttpError, LengthLimitError, metadataFileName, TrustedMetadataSet, Updater, type Fetcher, type FoundTarget, type MetadataStore, type TargetFile } from '@upfleet/core';
import type { ImageRepository } from './context.ts';

/** A Fetcher on global fetch(): non-2xx -> HttpError, past the cap -> LengthLimitError. */
export class HttpFetcher implements Fetcher {
  constructor(private readonly timeoutMs = 30_000) {}

  async fetch(url: string, maxLength: number): Promise<Uint8Array> {
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (cause) {
      throw new DownloadError(`GET ${url}: ${(cause as Error).message}`, { cause });
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new HttpError(url, res.status);
    }
    const chunks: Uint8Array[] = [];
    let received = 0;
    try {
      for await (const chunk of res.body ?? []) {
        received += chunk.byteLength;
        if (received > maxLength) {
          await res.body?.cancel();
          throw new LengthLimitError(url, maxLength, received);
        }
        chunks.push(chunk);
      }
    } catch (cause) {
      if (cause instanceof LengthLimitError) throw cause;
      throw new DownloadError(`GET ${url}: ${(cause as Error).message}`, { cause });
    }
    return new Uint8Array(Buffer.concat(chunks));
  }
}

/** Metadata files in a directory, replaced atomically (temp file, fsync, rename). */
export class DirectoryMetadataStore implements MetadataStore {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  async read(name: string): Promise<Uint8Array | undefined> {
    const path = join(this.dir, name);
    return existsSync(path) ? new Uint8Array(readFileSync(path)) : undefined;
  }

  async writeAtomic(name: string, bytes: Uint8Array): Promise<void> {
    const path = join(this.dir, name);
    const tmp = `${path}.tmp-${process.pid}`;
    const fd = openSync(tmp, 'w', 0o644);
    try {
      writeSync(fd, bytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  }

  async remove(name: string): Promise<void> {
    rmSync(join(this.dir, name), { force: true });
  }
}

export interface ImageRepoClientOptions {
  url: string;
  storeDir: string;
  /** The image repository's root.json to trust; without it, trust on first use. */
  root?: Uint8Array;
  fetcher?: Fetcher;
  now: () => Date;
  log: Logger;
  cacheMs?: number;
}

export class ImageRepoClient implements ImageRepository {
  readonly #store: DirectoryMetadataStore;
  readonly #fetcher: Fetcher;
  #updater: Updater | undefined;
  #refreshedAt = 0;
  #refreshing: Promise<Updater> | undefined;

  /** @throws MalformedMetadataError, UnsignedMetadataError when the given root is not a self-signed root */
  constructor(private readonly options: ImageRepoClientOptions) {
    // A bad root would be stored below and fail every later refresh: refuse it at start-up.
    if (options.root) new TrustedMetadataSet(options.root, options.now());
    this.#store = new DirectoryMetadataStore(options.storeDir);
    this.#fetcher = options.fetcher ?? new HttpFetcher();
  }

  get metadataBaseUrl(): string {
    return `${this.options.url.replace(/\/+$/, '')}/metadata/`;
  }

  /**
   * The verified target `name`; a miss in a cached view refreshes once more, so an
   * image published a moment ago is found.
   * @throws RepositoryError, DownloadError
   */
  async findTarget(name: string, hardwareId?: string): Promise<TargetFile | undefined> {
    const options = hardwareId === undefined ? {} : { hardwareId };
    const cached = this.#updater;
    const updater = await this.#fresh();
    const found = await updater.findTarget(name, options);
    if (found || updater !== cached) return found?.info;
    this.invalidate();
    return (await (await this.#fresh()).findTarget(name, options))?.info;
  }

  /**
   * Every verified target, from a view refreshed now (a listing shows what was just
   * published; a refresh that finds the timestamp unchanged fetches nothing more).
   * @throws RepositoryError, DownloadError
   */
  async listTargets(): Promise<FoundTarget[]> {
    this.invalidate(); // concurrent listings still share one refresh
    return (await this.#fresh()).listTargets();
  }

  /** Drops the cached view: the next lookup refreshes. */
  invalidate(): void {
    this.#updater = undefined;
  }

  async #fresh(): Promise<Updater> {
    const now = this.options.now().getTime();
    if (this.#updater && now - this.#refreshedAt < (this.options.cacheMs ?? 5000)) return this.#updater;
    this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  async #refresh(): Promise<Updater> {
    const rootName = metadataFileName('root');
    if (!(await this.#store.read(rootName))) {
      let root = this.options.root;
      if (!root) {
        root = await this.#fetcher.fetch(`${this.metadataBaseUrl}1.root.json`, 512 * 1024);
        new TrustedMetadataSet(root, this.options.now()); // not stored unless it is a self-signed root
        this.options.log.warn({ url: this.options.url }, 'image repository root trusted on first use; pass its root.json to pin it');
      }
      await this.#store.writeAtomic(rootName, root);
    }
    const updater = new Updater({ metadataBaseUrl: this.metadataBaseUrl, fetcher: this.#fetcher, store: this.#store, now: this.options.now() });
    await updater.refresh();
    this.#updater = updater;
    this.#refreshedAt = this.options.now().getTime();
    return updater;
  }
}
