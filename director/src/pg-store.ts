/**
 * DirectorStore on PostgreSQL through node-postgres (a connection pool), for
 * several director processes on one database. Invariants:
 * - A transaction holds one pooled connection; calls made inside its async
 *   context use that connection, calls outside run on any pooled connection.
 * - READ COMMITTED, with row locks where a change reads before it writes
 *   (`lockRow`: SELECT ... FOR UPDATE): the second of two changes to one
 *   device waits for the first to commit, then reads what it wrote.
 * - A transaction that fails with a serialization failure (40001) or a deadlock
 *   (40P01: two processes locking the same rows in another order) is rolled
 *   back and run again from the start, up to MAX_ATTEMPTS.
 * - A lost connection, a server shutting down or retries running out surface as
 *   StoreUnavailableError; nothing of the change was committed.
 * - A busy pool queues: a caller waits for a pooled connection as long as the
 *   connections in use keep finishing work (one released within each
 *   ACQUIRE_PROGRESS_MS). Only a new connection that cannot be opened within
 *   CONNECT_TIMEOUT_MS, or a full pool on which nothing finishes for ACQUIRE_PROGRESS_MS,
 *   is an outage (StoreUnavailableError).
 * - `lockRow` of a row that does not exist yet takes a transaction-scoped advisory lock
 *   on its key instead: two processes registering one device take turns instead of
 *   both inserting it.
 * - A transaction that fails on a unique key (23505) is run once more: under READ
 *   COMMITTED it may have lost a race with a concurrent insert of the same key (two
 *   devices registering one ECU serial), and its second run sees the committed row
 *   and answers as the rules say (a typed conflict). A second failure is rethrown.
 * - BIGINT columns read as JS numbers (counters and versions stay below 2^53).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { StoreUnavailableError } from './errors.ts';
import { migrate } from './migrations.ts';
import { SqlStore, type Row, type SqlConnection } from './sql-store.ts';

const MAX_ATTEMPTS = 12;
const RETRYABLE = new Set(['40001', '40P01']);
const UNIQUE_VIOLATION = '23505';
/**
 * SQLSTATE classes that say the server cannot serve now, not that the request was wrong:
 * connection exceptions, insufficient resources, a database not accepting connections,
 * operator intervention, system and internal errors.
 */
const UNAVAILABLE = /^(08|53|55|57|58|XX)/;
/** Per process: 3 processes use 30 of PostgreSQL's default 100 connections, with room for admin tools. */
const POOL_SIZE = 10;
/** Opening one connection; also how long a queued caller waits before checking that the pool is making progress. */
const CONNECT_TIMEOUT_MS = 10_000;
/** pg-pool's message when a connect (a new connection, or a wait in its queue) times out. */
const ACQUIRE_TIMEOUT = /timeout exceeded when trying to connect/i;

interface Tx {
  client: pg.PoolClient;
  open: boolean;
  savepoints: number;
}

const int8 = (text: string) => Number(text);
const TYPES = { getTypeParser: ((oid: number, format?: string) => (oid === 20 ? int8 : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser };

/** `?` placeholders numbered `$1, $2...` (the director's SQL has no `?` in literals). */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

function isTransient(error: unknown): boolean {
  const e = error as { code?: string; message?: string } | undefined;
  if (typeof e?.code === 'string' && UNAVAILABLE.test(e.code)) return true;
  if (typeof e?.code === 'string' && /^E[A-Z]+$/.test(e.code)) return true; // ECONNREFUSED, ECONNRESET...
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(e?.message ?? '');
}

export class PgConnection implements SqlConnection {
  readonly dialect = 'postgres';
  readonly #pool: pg.Pool;
  readonly #context = new AsyncLocalStorage<Tx>();
  readonly #poolSize: number;
  readonly #connectTimeoutMs: number;
  /** Connections given back to the pool so far: a queued caller's evidence that the pool is busy, not stuck. */
  #released = 0;

  constructor(url: string, poolSize = POOL_SIZE, connectTimeoutMs = CONNECT_TIMEOUT_MS) {
    this.#poolSize = poolSize;
    this.#connectTimeoutMs = connectTimeoutMs;
    this.#pool = new pg.Pool({ connectionString: url, max: poolSize, types: TYPES, connectionTimeoutMillis: connectTimeoutMs });
    // An idle connection the server closed: the pool drops it; the next query opens another.
    this.#pool.on('error', () => {});
    this.#pool.on('release', () => this.#released++);
  }

  /**
   * A pooled connection; queues while the pool is busy (see the module comment).
   * @throws StoreUnavailableError
   */
  async #acquire(): Promise<pg.PoolClient> {
    for (;;) {
      const releasedBefore = this.#released;
      try {
        return await this.#pool.connect();
      } catch (error) {
        const queued = ACQUIRE_TIMEOUT.test((error as Error).message) && this.#pool.totalCount >= this.#poolSize;
        if (queued && this.#released > releasedBefore) continue; // busy, and moving: keep our place in line
        throw new StoreUnavailableError('postgres', queued ? `no pooled connection finished any work for ${this.#connectTimeoutMs} ms` : (error as Error).message, { cause: error });
      }
    }
  }

  /** fn on the transaction's connection, or on a pooled one for this call. */
  async #onClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const tx = this.#current();
    if (tx) return fn(tx.client);
    const client = await this.#acquire();
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (error) {
      if (isTransient(error)) broken = error as Error;
      throw error;
    } finally {
      client.release(broken);
    }
  }

  #current(): Tx | undefined {
    const tx = this.#context.getStore();
    return tx?.open ? tx : undefined;
  }

  async #query(sql: string, params: unknown[]): Promise<pg.QueryResult> {
    const tx = this.#current();
    try {
      return await this.#onClient((client) => client.query(numbered(sql), params));
    } catch (error) {
      if (error instanceof StoreUnavailableError) throw error;
      if (!tx && isTransient(error)) throw new StoreUnavailableError('postgres', (error as Error).message, { cause: error });
      throw error;
    }
  }

  async all(sql: string, params: unknown[] = []): Promise<Row[]> {
    return (await this.#query(sql, params)).rows as Row[];
  }

  async run(sql: string, params: unknown[] = []): Promise<void> {
    await this.#query(sql, params);
  }

  async exec(sql: string): Promise<void> {
    await this.#onClient((client) => client.query(sql));
  }

  inTransaction(): boolean {
    return this.#current() !== undefined;
  }

  async lockRow(table: 'devices' | 'campaigns', id: string): Promise<void> {
    if (!this.#current()) return;
    const lockRow = () => this.#query(`SELECT 1 FROM ${table} WHERE id = ? FOR UPDATE`, [id]);
    if ((await lockRow()).rowCount! > 0) return;
    // No row yet: the key's advisory lock, then the row again (whoever held the key may have inserted it).
    // Only then: advisory locks take slots of the server's shared lock table, row locks do not,
    // and a campaign wave locks thousands of existing devices in one transaction.
    await this.#query(`SELECT pg_advisory_xact_lock(hashtextextended(?, 0))`, [`${table}/${id}`]);
    await lockRow();
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    const outer = this.#current();
    if (outer) return this.#savepoint(outer, fn);
    let uniqueRetried = false;
    for (let attempt = 1; ; attempt++) {
      const client = await this.#acquire();
      const tx: Tx = { client, open: true, savepoints: 0 };
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await this.#context.run(tx, fn);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        tx.open = false;
        await client.query('ROLLBACK').catch((e: Error) => (broken = e));
        const code = (error as { code?: string }).code;
        if (code === UNIQUE_VIOLATION && !uniqueRetried) {
          uniqueRetried = true;
          continue;
        }
        if (code !== undefined && RETRYABLE.has(code) && attempt < MAX_ATTEMPTS) {
          await new Promise((r) => setTimeout(r, Math.random() * 5 * attempt));
          continue;
        }
        if (isTransient(error) || (code !== undefined && RETRYABLE.has(code))) {
          throw new StoreUnavailableError('postgres', `${(error as Error).message}${code ? ` (${code})` : ''}`, { cause: error });
        }
        throw error;
      } finally {
        tx.open = false;
        client.release(broken);
      }
    }
  }

  async #savepoint<T>(tx: Tx, fn: () => Promise<T>): Promise<T> {
    const name = `sp${++tx.savepoints}`;
    await tx.client.query(`SAVEPOINT ${name}`);
    try {
      const result = await fn();
      await tx.client.query(`RELEASE SAVEPOINT ${name}`);
      return result;
    } catch (error) {
      await tx.client.query(`ROLLBACK TO SAVEPOINT ${name}`);
      await tx.client.query(`RELEASE SAVEPOINT ${name}`);
      throw error;
    } finally {
      tx.savepoints--;
    }
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}

export class PgStore extends SqlStore {
  /**
   * Connects to `url` (postgres://...) and migrates the database.
   * @throws StoreUnavailableError (unreachable), DatabaseConfigError (schema newer than this director)
   */
  static async open(url: string, poolSize?: number, connectTimeoutMs?: number): Promise<PgStore> {
    const db = new PgConnection(url, poolSize, connectTimeoutMs);
    try {
      await migrate(db);
    } catch (error) {
      await db.close();
      throw error;
    }
    return new PgStore(db);
  }
}
