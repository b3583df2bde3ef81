/**
 * An in-memory repository for updater tests (model: python-tuf
 * tests/repository_simulator.py): a Fetcher serving a RepositoryBuilder's files,
 * recording every URL asked for, and an in-memory MetadataStore. No HTTP.
 */
import type { Fetcher, MetadataStore } from '../updater.ts';
import type { RepositoryBuilder } from '../repository.ts';
import { HttpError, LengthLimitError } from '../errors.ts';

export const METADATA_URL = 'https://repo.test/metadata/';
export const TARGETS_URL = 'https://repo.test/targets/';

export class SimulatorFetcher implements Fetcher {
  /** Every URL fetched, in order. */
  readonly requests: string[] = [];
  /** Files served instead of (or in addition to) the builder's: repository path -> bytes. */
  readonly overrides = new Map<string, Uint8Array>();
  /** Repository paths answered with a 404 even if the builder has them. */
  readonly missing = new Set<string>();

  constructor(readonly repo: RepositoryBuilder) {}

  async fetch(url: string, maxLength: number): Promise<Uint8Array> {
    this.requests.push(url);
    const path = decodeURIComponent(url.replace('https://repo.test/', ''));
    const bytes = this.missing.has(path) ? undefined : (this.overrides.get(path) ?? this.repo.files.get(path));
    if (!bytes) throw new HttpError(url, 404);
    if (bytes.byteLength > maxLength) throw new LengthLimitError(url, maxLength, bytes.byteLength);
    return bytes;
  }

  /** The metadata file names fetched (after the base URL), in order. */
  get metadataRequests(): string[] {
    return this.requests.filter((u) => u.startsWith(METADATA_URL)).map((u) => u.slice(METADATA_URL.length));
  }
}

export class MemoryStore implements MetadataStore {
  readonly files = new Map<string, Uint8Array>();
  /** Whether the updater asked for each file's last write to be durable. */
  readonly durable = new Map<string, boolean>();

  async read(name: string): Promise<Uint8Array | undefined> {
    return this.files.get(name);
  }

  async writeAtomic(name: string, bytes: Uint8Array, options?: { durable: boolean }): Promise<void> {
    this.files.set(name, bytes);
    this.durable.set(name, options?.durable ?? true);
  }

  async remove(name: string): Promise<void> {
    this.files.delete(name);
    this.durable.delete(name);
  }

  /** A copy of the stored files, to assert that a failed update changed nothing. */
  snapshot(): Map<string, Uint8Array> {
    return new Map(this.files);
  }
}
