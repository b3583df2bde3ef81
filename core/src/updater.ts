/**
 * The TUF client workflow as orchestration (model: python-tuf ngclient `Updater`):
 * load local, fetch remote, hand the bytes to the TrustedMetadataSet, persist
 * what it accepts. Every check lives in the trusted set; this module only sequences.
 * It does no I/O itself: the caller supplies a Fetcher (the network) and a
 * MetadataStore (the local copies), and the reference time.
 *
 * Invariants:
 * - Only bytes the trusted set accepted are persisted, byte for byte, under
 *   `<role>.json` with the role name percent-encoded (`quoteRoleName`), so no
 *   role name can name another file or escape the store.
 * - Remote URLs are `metadataBaseUrl + [version.]quotedRole.json`, plain concatenation.
 * - One refresh per Updater; `findTarget` refreshes first if needed.
 * - A target's bytes are returned only after their length and every listed hash
 *   (all of a known algorithm) match.
 */
import { TrustedMetadataSet, DEFAULT_MAX_LENGTH } from './trusted-set.ts';
import type { Targets } from './metadata/targets.ts';
import type { TargetFile } from './metadata/file-info.ts';
import type { RoleType } from './metadata/signed.ts';
import { EqualVersionError, HttpError, RepositoryError, UnlistedRoleError, UsageError } from './errors.ts';

/** The network, as the updater needs it. */
export interface Fetcher {
  /**
   * The body of `url`, at most `maxLength` bytes.
   * @throws HttpError (status) for a non-2xx answer, LengthLimitError past the cap,
   *   DownloadError for anything else that goes wrong in transport.
   */
  fetch(url: string, maxLength: number): Promise<Uint8Array>;
}

/** Local copies of trusted metadata: file name -> bytes, written atomically. */
export interface MetadataStore {
  /** The bytes stored under `name`, or undefined if there are none. */
  read(name: string): Promise<Uint8Array | undefined>;
  /**
   * Replaces `name` all at once (never a half-written file). `durable: false` marks a
   * cache the updater re-verifies whenever it loads it, so the store may skip syncing
   * it to disk: after a power cut it may be lost, and is then downloaded again.
   */
  writeAtomic(name: string, bytes: Uint8Array, options?: { durable: boolean }): Promise<void>;
}

/**
 * Root, timestamp and snapshot are trust state: the versions they hold guard the next
 * update against rollback (5.3-5.5), so they must survive a power cut. Targets roles are
 * checked against snapshot every time they load (5.6), so a lost copy is only re-fetched.
 */
const DURABLE_ROLES: ReadonlySet<string> = new Set(['root', 'timestamp', 'snapshot']);

export interface UpdaterOptions {
  /** Base URL of the metadata; a trailing `/` is added if missing. */
  metadataBaseUrl: string;
  /** Base URL of the targets (needed for downloadTarget). */
  targetBaseUrl?: string;
  fetcher: Fetcher;
  store: MetadataStore;
  /** The reference time for every expiry check. */
  now: Date;
  /** Most root versions fetched in one refresh (python-tuf: 256). */
  maxRootRotations?: number;
  /** Most targets roles visited in one target search (python-tuf: 32). */
  maxDelegations?: number;
  maxLength?: Partial<Record<RoleType, number>>;
}

export interface FoundTarget {
  path: string;
  info: TargetFile;
  /** The targets role that listed it. */
  role: string;
}

/** Python's `urllib.parse.quote(name, safe="")`: everything but A-Z a-z 0-9 `_.-~` is escaped. */
export function quoteRoleName(name: string): string {
  return encodeURIComponent(name).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The store file name of a role: `<quoted role>.json`. */
export function metadataFileName(role: string): string {
  return `${quoteRoleName(role)}.json`;
}

export class Updater {
  readonly #options: UpdaterOptions;
  readonly #metadataBaseUrl: string;
  readonly #maxLength: Record<RoleType, number>;
  #trusted: TrustedMetadataSet | undefined;
  #refreshed = false;
  #writes = new Map<string, Promise<void>>();

  constructor(options: UpdaterOptions) {
    this.#options = options;
    this.#metadataBaseUrl = withSlash(options.metadataBaseUrl);
    this.#maxLength = { ...DEFAULT_MAX_LENGTH, ...options.maxLength };
  }

  /** The trusted metadata so far (read-only views). @throws UsageError before refresh */
  get trustedSet(): TrustedMetadataSet {
    if (!this.#trusted) throw new UsageError('refresh first');
    return this.#trusted;
  }

  /**
   * Updates root, timestamp, snapshot and targets (TUF 5.2-5.6), persisting each
   * accepted file. Delegated roles are fetched on demand by findTarget.
   * @throws UsageError (no local root, or a second refresh), RepositoryError, DownloadError,
   *   and whatever the store throws.
   */
  async refresh(): Promise<void> {
    if (this.#refreshed) throw new UsageError('an Updater refreshes once');
    this.#refreshed = true;
    const rootBytes = await this.#options.store.read(metadataFileName('root'));
    if (!rootBytes) throw new UsageError('no trusted root.json in the metadata store');
    this.#trusted = new TrustedMetadataSet(rootBytes, this.#options.now, {
      maxLength: this.#maxLength,
      maxRootRotations: this.#options.maxRootRotations ?? 256,
    });
    await this.#flushedAfter(async () => {
      await this.#loadRoot();
      await this.#loadTimestamp();
      await this.#loadSnapshot();
      await this.#loadTargets('targets', 'root');
    });
  }

  /**
   * Searches the delegation graph (pre-order depth-first, in listed order,
   * stopping at terminating roles, each role visited once) for `path`.
   * With `hardwareId`, roles whose Uptane hardware-ID filter excludes it are skipped.
   * @throws as refresh; UsageError after a failed refresh
   */
  async findTarget(path: string, options: { hardwareId?: string } = {}): Promise<FoundTarget | undefined> {
    if (!this.#refreshed) await this.refresh();
    if (!this.#trusted?.targets) throw new UsageError('the refresh failed: start again with a new Updater');
    return this.#flushedAfter(() => this.#search(path, options.hardwareId));
  }

  async #search(path: string, hardwareId: string | undefined): Promise<FoundTarget | undefined> {
    const maxDelegations = this.#options.maxDelegations ?? 32;
    let toVisit: Array<[role: string, delegator: string]> = [['targets', 'root']];
    const visited = new Set<string>();
    while (visited.size <= maxDelegations && toVisit.length > 0) {
      const [role, delegator] = toVisit.pop()!;
      if (visited.has(role)) continue; // cycles
      const targets = await this.#loadTargets(role, delegator);
      const info = targets.targets[path];
      if (info) return { path, info, role };
      visited.add(role);
      const children: Array<[string, string]> = [];
      for (const child of targets.delegations?.rolesForTarget(path, hardwareId) ?? []) {
        if (child.allowed) children.push([child.name, role]);
        if (child.terminating) {
          toVisit = [];
          break;
        }
      }
      toVisit.push(...children.reverse());
    }
    return undefined;
  }

  /** Where a found target is served (consistent snapshots: `<dir/><first hash>.<basename>`). */
  targetUrl(found: FoundTarget, targetBaseUrl = this.#options.targetBaseUrl): string {
    if (targetBaseUrl === undefined) throw new UsageError('no target base URL');
    let path = found.path;
    if (this.trustedSet.root.consistentSnapshot) {
      const hash = Object.values(found.info.hashes)[0]!;
      const slash = path.lastIndexOf('/');
      path = `${path.slice(0, slash + 1)}${hash}.${path.slice(slash + 1)}`;
    }
    return withSlash(targetBaseUrl) + path;
  }

  /**
   * Downloads a found target (at most its signed length) and returns its bytes
   * once length and every hash match.
   * @throws UnsupportedHashError before any download, LengthOrHashMismatchError, DownloadError
   */
  async downloadTarget(found: FoundTarget, targetBaseUrl?: string): Promise<Uint8Array> {
    found.info.hashAlgorithms(found.path);
    const bytes = await this.#options.fetcher.fetch(this.targetUrl(found, targetBaseUrl), found.info.length);
    found.info.verify(found.path, bytes);
    return bytes;
  }

  /**
   * 5.3: each next root version until the repository has none (403/404). At the
   * cap it stops asking and goes on with the newest root it trusts (python-tuf).
   */
  async #loadRoot(): Promise<void> {
    const trusted = this.#trusted!;
    const first = trusted.root.version + 1;
    const cap = this.#options.maxRootRotations ?? 256;
    for (let version = first; version < first + cap; version++) {
      let bytes: Uint8Array;
      try {
        bytes = await this.#download('root', this.#maxLength.root, version);
      } catch (e) {
        if (e instanceof HttpError && (e.status === 403 || e.status === 404)) return;
        throw e;
      }
      trusted.updateRoot(bytes);
      this.#persist('root', bytes);
    }
  }

  /** 5.4: the local timestamp (for rollback protection, if still valid), then the remote one. */
  async #loadTimestamp(): Promise<void> {
    const trusted = this.#trusted!;
    await this.#tryLocal('timestamp', (bytes) => trusted.updateTimestamp(bytes));
    const bytes = await this.#download('timestamp', this.#maxLength.timestamp);
    try {
      trusted.updateTimestamp(bytes);
    } catch (e) {
      if (e instanceof EqualVersionError) return; // nothing new: keep the trusted one
      throw e;
    }
    this.#persist('timestamp', bytes);
  }

  /** 5.5: the local snapshot if it is still the final one, else the remote one. */
  async #loadSnapshot(): Promise<void> {
    const trusted = this.#trusted!;
    if (await this.#tryLocal('snapshot', (bytes) => trusted.updateSnapshot(bytes, { trusted: true }))) return;
    const meta = trusted.timestamp!.snapshotMeta;
    const bytes = await this.#download('snapshot', meta.length ?? this.#maxLength.snapshot, this.#versionFor(meta.version));
    trusted.updateSnapshot(bytes);
    this.#persist('snapshot', bytes);
  }

  /** 5.6/5.7: a targets role, trusted via this delegator already, or local, or remote. */
  async #loadTargets(role: string, delegator: string): Promise<Targets> {
    const trusted = this.#trusted!;
    if (trusted.isTrustedVia(role, delegator)) return trusted.get(role) as Targets;
    const local = await this.#tryLocal(role, (bytes) => trusted.updateDelegatedTargets(bytes, role, delegator));
    if (local) return local;
    const meta = trusted.snapshot!.meta[`${role}.json`];
    if (!meta) throw new UnlistedRoleError(role); // 5.6.1, before fetching anything
    const bytes = await this.#download(role, meta.length ?? this.#maxLength.targets, this.#versionFor(meta.version));
    const targets = trusted.updateDelegatedTargets(bytes, role, delegator);
    this.#persist(role, bytes);
    return targets;
  }

  /** Runs `update` on the stored copy of `role`; a missing or refused copy gives undefined. */
  async #tryLocal<T>(role: string, update: (bytes: Uint8Array) => T): Promise<T | undefined> {
    const bytes = await this.#options.store.read(metadataFileName(role));
    if (!bytes) return undefined;
    try {
      return update(bytes);
    } catch (e) {
      if (e instanceof RepositoryError) return undefined;
      throw e;
    }
  }

  #versionFor(version: number): number | undefined {
    return this.#trusted!.root.consistentSnapshot ? version : undefined;
  }

  #download(role: string, maxLength: number, version?: number): Promise<Uint8Array> {
    const prefix = version === undefined ? '' : `${version}.`;
    return this.#options.fetcher.fetch(`${this.#metadataBaseUrl}${prefix}${metadataFileName(role)}`, maxLength);
  }

  /**
   * Starts writing an accepted file without waiting, so disk syncs overlap the
   * next download; writes to one name stay in order, and every public method
   * waits for all of them (and reports their failure) before it returns.
   */
  #persist(role: string, bytes: Uint8Array): void {
    const name = metadataFileName(role);
    const previous = this.#writes.get(name) ?? Promise.resolve();
    const write = previous.then(() => this.#options.store.writeAtomic(name, bytes, { durable: DURABLE_ROLES.has(role) }));
    write.catch(() => {}); // observed in #flush
    this.#writes.set(name, write);
  }

  async #flush(): Promise<void> {
    const writes = [...this.#writes.values()];
    this.#writes.clear();
    await Promise.all(writes);
  }

  /** Runs `work`, then waits for its writes; the first error wins (work's, else a write's). */
  async #flushedAfter<T>(work: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await work();
    } catch (e) {
      await this.#flush().catch(() => {});
      throw e;
    }
    await this.#flush();
    return result;
  }
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}
