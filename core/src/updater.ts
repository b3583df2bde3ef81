/**
 * The one verification engine (model: python-tuf ngclient `Updater`): load local,
 * fetch remote, hand the bytes to the TrustedMetadataSet, persist what it accepts.
 * Every check lives in the trusted set; this module only sequences. It does no I/O
 * itself: the caller supplies a RoleSource (where new metadata comes from: the
 * network on the primary, the primary's bundle on a secondary, or the local store
 * itself to re-verify offline), a MetadataStore (the trusted local copies), and the
 * reference time. The primary and every full-verification ECU run this same code;
 * partial verification runs its root chain and `refreshPartial`.
 *
 * Invariants:
 * - A role the source lacks is an error (a 404, or a bundle without it), never a
 *   skip; only the root chain ends where the source has no next version.
 * - Only bytes the trusted set accepted are persisted, byte for byte, under
 *   `<role>.json` with the role name percent-encoded (`quoteRoleName`), so no
 *   role name can name another file or escape the store.
 * - Network URLs are `metadataBaseUrl + [version.]quotedRole.json`, plain concatenation.
 * - `acceptRole` (the Uptane layer's binding checks) runs on every new role before
 *   anything of it is persisted.
 * - 5.3.11: a new root that changes the timestamp or snapshot keys deletes the
 *   stored timestamp and snapshot before it is itself persisted (fast-forward recovery).
 * - One refresh per Updater; `findTarget` refreshes first if needed.
 * - The target search fetches ahead: the next roles on its stack (at most
 *   `prefetch`, by default PREFETCH_WINDOW, never more than the delegation cap lets it visit, and only
 *   roles the snapshot lists) are fetched in parallel. Fetching early is not
 *   trusting early: fetched bytes are held, unparsed, until the search reaches the
 *   role through its delegator, and are then verified exactly as if fetched then
 *   (against that delegator's keys and threshold and the snapshot's version and
 *   hashes). A held copy the search never reaches is dropped unread, and a failed
 *   early fetch is reported only if the search reaches that role.
 * - A target's bytes are returned only after their length and every listed hash
 *   (all of a known algorithm) match.
 */
import { TrustedMetadataSet, DEFAULT_MAX_LENGTH } from './trusted-set.ts';
import type { AnySigned } from './metadata/envelope.ts';
import type { Root } from './metadata/root.ts';
import type { Targets } from './metadata/targets.ts';
import type { MetaFile, TargetFile } from './metadata/file-info.ts';
import type { RoleType } from './metadata/signed.ts';
import { EqualVersionError, HttpError, IncompleteBundleError, MetadataTooLargeError, RepositoryError, UnlistedRoleError, UsageError } from './errors.ts';

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
  /** Deletes `name` durably (nothing if absent). */
  remove(name: string): Promise<void>;
}

/** Where new metadata comes from. */
export interface RoleSource {
  /** Root version `version`, or undefined where the source has none: the end of the chain. */
  root(version: number, maxLength: number): Promise<Uint8Array | undefined>;
  /**
   * The role's bytes (`version` set under consistent snapshots).
   * @throws whatever says the source cannot give it: HttpError, IncompleteBundleError, ...
   */
  role(role: string, version: number | undefined, maxLength: number): Promise<Uint8Array>;
}

/** A TUF repository over HTTP: `base + [version.]quotedRole.json`; a 403 or 404 root ends the chain. */
export function networkSource(metadataBaseUrl: string, fetcher: Fetcher): RoleSource {
  const base = withSlash(metadataBaseUrl);
  const url = (role: string, version?: number) => `${base}${version === undefined ? '' : `${version}.`}${metadataFileName(role)}`;
  return {
    async root(version, maxLength) {
      try {
        return await fetcher.fetch(url('root', version), maxLength);
      } catch (e) {
        if (e instanceof HttpError && (e.status === 403 || e.status === 404)) return undefined;
        throw e;
      }
    },
    role: (role, version, maxLength) => fetcher.fetch(url(role, version), maxLength),
  };
}

/**
 * The metadata a primary relays to a secondary: `<role>.json` and `N.root.json` -> bytes.
 * A missing role is an IncompleteBundleError; a file over its cap is refused before parsing.
 */
export function bundleSource(repo: string, files: ReadonlyMap<string, Uint8Array>): RoleSource {
  const capped = (name: string, maxLength: number) => {
    const bytes = files.get(name);
    if (bytes && bytes.byteLength > maxLength) throw new MetadataTooLargeError(name, maxLength, bytes.byteLength);
    return bytes;
  };
  return {
    async root(version, maxLength) {
      return capped(`${version}.root.json`, maxLength);
    },
    async role(role, _version, maxLength) {
      const bytes = capped(`${role}.json`, maxLength);
      if (!bytes) throw new IncompleteBundleError(repo, `${role}.json`);
      return bytes;
    },
  };
}

/**
 * The trusted store as its own source: a refresh over it re-verifies what is stored,
 * offline, with every check (versions, hashes, expiry, delegations) run again.
 */
export function storeSource(repo: string, store: MetadataStore): RoleSource {
  return {
    root: (version) => store.read(`${version}.${metadataFileName('root')}`),
    async role(role) {
      const bytes = await store.read(metadataFileName(role));
      if (!bytes) throw new IncompleteBundleError(repo, metadataFileName(role));
      return bytes;
    },
  };
}

/**
 * Root, timestamp and snapshot are trust state: the versions they hold guard the next
 * update against rollback (5.3-5.5), so they must survive a power cut. Targets roles are
 * checked against snapshot every time they load (5.6), so a lost copy is only re-fetched.
 */
const DURABLE_ROLES: ReadonlySet<string> = new Set(['root', 'timestamp', 'snapshot']);

/** Most roles the target search fetches ahead of the one it is verifying, by default. */
export const PREFETCH_WINDOW = 16;

/**
 * A targets role fetched ahead of the search, not yet trusted: the stored copy if
 * there is one (verified first, as always), else the source's answer, whose
 * failure is held until the search asks for it.
 */
interface Prefetched {
  local: Uint8Array | undefined;
  remote: Promise<Uint8Array> | undefined;
}

export interface UpdaterOptions {
  /** Where new metadata comes from; by default the network at metadataBaseUrl through fetcher. */
  source?: RoleSource;
  /** Base URL of the metadata; a trailing `/` is added if missing. */
  metadataBaseUrl?: string;
  /** Base URL of the targets (needed for downloadTarget). */
  targetBaseUrl?: string;
  /** The network (needed for the default source and for downloadTarget). */
  fetcher?: Fetcher;
  store: MetadataStore;
  /**
   * Runs on every role the trusted set accepts from the source, before it is persisted;
   * it throws (a RepositoryError) to refuse it. Uptane binds director roles to a device here.
   */
  acceptRole?: (role: string, signed: AnySigned) => void;
  /** The reference time for every expiry check. */
  now: Date;
  /** Most root versions fetched in one refresh (python-tuf: 256). */
  maxRootRotations?: number;
  /** Most targets roles visited in one target search (python-tuf: 32). */
  maxDelegations?: number;
  /**
   * Most roles the target search fetches ahead of the one it verifies (default
   * PREFETCH_WINDOW). 0 fetches each role only when the search reaches it, so the
   * requests follow the search order exactly (the TUF conformance suite asserts that order).
   */
  prefetch?: number;
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
  readonly #source: RoleSource;
  readonly #maxLength: Record<RoleType, number>;
  #trusted: TrustedMetadataSet | undefined;
  #refreshed = false;
  #writes = new Map<string, Promise<void>>();
  #prefetched = new Map<string, Promise<Prefetched>>();

  constructor(options: UpdaterOptions) {
    this.#options = options;
    if (options.source) this.#source = options.source;
    else if (options.metadataBaseUrl !== undefined && options.fetcher) this.#source = networkSource(options.metadataBaseUrl, options.fetcher);
    else throw new UsageError('an Updater needs a source, or a metadataBaseUrl and a fetcher');
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
    await this.#start();
    await this.#flushedAfter(async () => {
      await this.#loadRoot();
      await this.#loadTimestamp();
      await this.#loadSnapshot();
      await this.#loadTargets('targets', 'root');
    });
  }

  /**
   * Uptane 5.4.4.3 partial verification: the root chain, then the top-level targets
   * checked against the final root alone (no timestamp or snapshot): signed by its
   * targets keys, not expired, and no older than the stored copy, which is persisted
   * durably because it is now the rollback state.
   * @throws as refresh
   */
  async refreshPartial(): Promise<Targets> {
    await this.#start();
    return this.#flushedAfter(async () => {
      await this.#loadRoot();
      const trusted = this.#trusted!;
      await this.#tryLocal('targets', (bytes) => trusted.updatePartialTargets(bytes, { trusted: true }));
      const bytes = await this.#source.role('targets', undefined, this.#maxLength.targets);
      const targets = trusted.updatePartialTargets(bytes);
      this.#accept('targets', targets);
      this.#persist('targets', bytes, true);
      return targets;
    });
  }

  async #start(): Promise<void> {
    if (this.#refreshed) throw new UsageError('an Updater refreshes once');
    this.#refreshed = true;
    const rootBytes = await this.#options.store.read(metadataFileName('root'));
    if (!rootBytes) throw new UsageError('no trusted root.json in the metadata store');
    this.#trusted = new TrustedMetadataSet(rootBytes, this.#options.now, {
      maxLength: this.#maxLength,
      maxRootRotations: this.#options.maxRootRotations ?? 256,
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
      this.#prefetchAhead(toVisit, visited, maxDelegations + 1 - visited.size);
    }
    return undefined;
  }

  /**
   * Every target the repository lists, each as `findTarget` finds it (so `role` is
   * the role that answers for its path, and a name a delegated role lists outside
   * its paths is not trusted from it), sorted by path. Names are collected from
   * every role reachable through `roles` delegations (each once, at most
   * `maxDelegations`); hash-bin (succinct) delegations are searched per name, not
   * enumerated.
   * @throws as refresh; UsageError after a failed refresh
   */
  async listTargets(): Promise<FoundTarget[]> {
    if (!this.#refreshed) await this.refresh();
    if (!this.#trusted?.targets) throw new UsageError('the refresh failed: start again with a new Updater');
    return this.#flushedAfter(async () => {
      const maxDelegations = this.#options.maxDelegations ?? 32;
      const names = new Set<string>();
      const visited = new Set<string>();
      const toVisit: Array<[role: string, delegator: string]> = [['targets', 'root']];
      while (visited.size <= maxDelegations && toVisit.length > 0) {
        const [role, delegator] = toVisit.shift()!;
        if (visited.has(role)) continue;
        visited.add(role);
        const targets = await this.#loadTargets(role, delegator);
        for (const name of Object.keys(targets.targets)) names.add(name);
        for (const child of targets.delegations?.roles ?? []) toVisit.push([child.name, role]);
      }
      const found: FoundTarget[] = [];
      for (const name of [...names].sort()) {
        const f = await this.#search(name, undefined);
        if (f) found.push(f);
      }
      return found;
    });
  }

  /**
   * Starts fetching the roles the search will visit next (the top of its stack,
   * skipping roles already visited), at most PREFETCH_WINDOW and `remaining` of them.
   * Roles the snapshot does not list are left for the search to refuse.
   */
  #prefetchAhead(toVisit: ReadonlyArray<[role: string, delegator: string]>, visited: ReadonlySet<string>, remaining: number): void {
    const trusted = this.#trusted!;
    const window = Math.min(this.#options.prefetch ?? PREFETCH_WINDOW, remaining);
    const ahead = new Set<string>();
    for (let i = toVisit.length - 1; i >= 0 && ahead.size < window; i--) {
      const [role, delegator] = toVisit[i]!;
      if (visited.has(role) || ahead.has(role)) continue;
      ahead.add(role);
      if (this.#prefetched.has(role) || trusted.isTrustedVia(role, delegator)) continue;
      const meta = trusted.snapshot!.meta[`${role}.json`];
      if (!meta) continue;
      const prefetched = this.#options.store.read(metadataFileName(role)).then((local) => ({
        local,
        remote: local ? undefined : quietly(this.#fetchRole(role, meta)),
      }));
      this.#prefetched.set(role, quietly(prefetched));
    }
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
    if (!this.#options.fetcher) throw new UsageError('no fetcher to download targets with');
    const bytes = await this.#options.fetcher.fetch(this.targetUrl(found, targetBaseUrl), found.info.length);
    found.info.verify(found.path, bytes);
    return bytes;
  }

  /**
   * 5.3: each next root version until the source has none. At the cap it stops
   * asking and goes on with the newest root it trusts (python-tuf).
   */
  async #loadRoot(): Promise<void> {
    const trusted = this.#trusted!;
    const first = trusted.root.version + 1;
    const cap = this.#options.maxRootRotations ?? 256;
    for (let version = first; version < first + cap; version++) {
      const bytes = await this.#source.root(version, this.#maxLength.root);
      if (!bytes) return;
      const previous = trusted.root;
      const root = trusted.updateRoot(bytes);
      this.#accept('root', root);
      // 5.3.11: new timestamp or snapshot keys void the stored copies, which may be
      // ahead of what the new keys signed (recovery from a fast-forward attack). They
      // go before the new root is stored, so a power cut cannot keep them under it.
      if (rolesRekeyed(previous, root, ['timestamp', 'snapshot'])) {
        await this.#flush();
        await this.#options.store.remove(metadataFileName('timestamp'));
        await this.#options.store.remove(metadataFileName('snapshot'));
      }
      this.#persist('root', bytes);
    }
  }

  /** 5.4: the local timestamp (for rollback protection, if still valid), then the remote one. */
  async #loadTimestamp(): Promise<void> {
    const trusted = this.#trusted!;
    await this.#tryLocal('timestamp', (bytes) => trusted.updateTimestamp(bytes));
    const bytes = await this.#source.role('timestamp', undefined, this.#maxLength.timestamp);
    let timestamp;
    try {
      timestamp = trusted.updateTimestamp(bytes);
    } catch (e) {
      if (e instanceof EqualVersionError) return; // nothing new: keep the trusted one
      throw e;
    }
    this.#accept('timestamp', timestamp);
    this.#persist('timestamp', bytes);
  }

  /** 5.5: the local snapshot if it is still the final one, else the remote one. */
  async #loadSnapshot(): Promise<void> {
    const trusted = this.#trusted!;
    if (await this.#tryLocal('snapshot', (bytes) => trusted.updateSnapshot(bytes, { trusted: true }))) return;
    const meta = trusted.timestamp!.snapshotMeta;
    const bytes = await this.#source.role('snapshot', this.#versionFor(meta.version), meta.length ?? this.#maxLength.snapshot);
    this.#accept('snapshot', trusted.updateSnapshot(bytes));
    this.#persist('snapshot', bytes);
  }

  /**
   * 5.6/5.7: a targets role, trusted via this delegator already, or local, or remote
   * (fetched now, or earlier by #prefetchAhead: verified the same way either way).
   */
  async #loadTargets(role: string, delegator: string): Promise<Targets> {
    const trusted = this.#trusted!;
    if (trusted.isTrustedVia(role, delegator)) return trusted.get(role) as Targets;
    const prefetched = this.#prefetched.get(role);
    this.#prefetched.delete(role);
    const { local, remote } = prefetched ? await prefetched : { local: await this.#options.store.read(metadataFileName(role)), remote: undefined };
    const verified = local && this.#tryVerify(() => trusted.updateDelegatedTargets(local, role, delegator));
    if (verified) return verified;
    const meta = trusted.snapshot!.meta[`${role}.json`];
    if (!meta) throw new UnlistedRoleError(role); // 5.6.1, before fetching anything
    const bytes = await (remote ?? this.#fetchRole(role, meta));
    const targets = trusted.updateDelegatedTargets(bytes, role, delegator);
    this.#accept(role, targets);
    this.#persist(role, bytes);
    return targets;
  }

  /** A targets role's bytes from the source, at the version and within the length the snapshot lists. */
  #fetchRole(role: string, meta: MetaFile): Promise<Uint8Array> {
    return this.#source.role(role, this.#versionFor(meta.version), meta.length ?? this.#maxLength.targets);
  }

  /** Runs `update` on the stored copy of `role`; a missing or refused copy gives undefined. */
  async #tryLocal<T>(role: string, update: (bytes: Uint8Array) => T): Promise<T | undefined> {
    const bytes = await this.#options.store.read(metadataFileName(role));
    return bytes && this.#tryVerify(() => update(bytes));
  }

  /** `update`'s result, or undefined if it refuses the bytes (a RepositoryError). */
  #tryVerify<T>(update: () => T): T | undefined {
    try {
      return update();
    } catch (e) {
      if (e instanceof RepositoryError) return undefined;
      throw e;
    }
  }

  #versionFor(version: number): number | undefined {
    return this.#trusted!.root.consistentSnapshot ? version : undefined;
  }

  #accept(role: string, signed: AnySigned): void {
    this.#options.acceptRole?.(role, signed);
  }

  /**
   * Starts writing an accepted file without waiting, so disk syncs overlap the
   * next download; writes to one name stay in order, and every public method
   * waits for all of them (and reports their failure) before it returns.
   */
  #persist(role: string, bytes: Uint8Array, durable = DURABLE_ROLES.has(role)): void {
    const name = metadataFileName(role);
    const previous = this.#writes.get(name) ?? Promise.resolve();
    const write = previous.then(() => this.#options.store.writeAtomic(name, bytes, { durable }));
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

/** Whether any of `roles` has other keys or another threshold in `next` than in `previous`. */
function rolesRekeyed(previous: Root, next: Root, roles: ReadonlyArray<'timestamp' | 'snapshot'>): boolean {
  return roles.some((role) => {
    const [a, b] = [previous.roles[role], next.roles[role]];
    const keys = (r: typeof a, root: Root) => r.keyids.map((id) => JSON.stringify(root.keys[id] ?? id)).sort().join();
    return a.threshold !== b.threshold || keys(a, previous) !== keys(b, next);
  });
}

/** `promise`, with its rejection marked handled: whoever awaits it later still sees it. */
function quietly<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}
