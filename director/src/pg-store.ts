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
 * - BIGINT columns read as JS numbers (counters and versions stay below 2^53).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { StoreUnavailableError } from './errors.ts';
import { migrate } from './migrations.ts';
import { SqlStore, type Row, type SqlConnection } from './sql-store.ts';

const MAX_ATTEMPTS = 12;
const RETRYABLE = new Set(['40001', '40P01']);
/** Connection exceptions, operator intervention, insufficient resources. */
const UNAVAILABLE = /^(08|57P|53)/;
const POOL_SIZE = 10;

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
  return /Connection terminated|connection timeout|Client has encountered a connection error/i.test(e?.message ?? '');
}

export class PgConnection implements SqlConnection {
  readonly dialect = 'postgres';
  readonly #pool: pg.Pool;
  readonly #context = new AsyncLocalStorage<Tx>();

  constructor(url: string, poolSize = POOL_SIZE) {
    this.#pool = new pg.Pool({ connectionString: url, max: poolSize, types: TYPES, connectionTimeoutMillis: 10_000 });
    // An idle connection the server closed: the pool drops it; the next query opens another.
    this.#pool.on('error', () => {});
  }

  #current(): Tx | undefined {
    const tx = this.#context.getStore();
    return tx?.open ? tx : undefined;
  }

  async #query(sql: string, params: unknown[]): Promise<pg.QueryResult> {
    const tx = this.#current();
    try {
      return await (tx ? tx.client : this.#pool).query(numbered(sql), params);
    } catch (error) {
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
    const tx = this.#current();
    await (tx ? tx.client : this.#pool).query(sql);
  }

  async lockRow(table: 'devices' | 'campaigns', id: string): Promise<void> {
    if (!this.#current()) return;
    await this.#query(`SELECT 1 FROM ${table} WHERE id = ? FOR UPDATE`, [id]);
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    const outer = this.#current();
    if (outer) return this.#savepoint(outer, fn);
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.#pool.connect();
      } catch (error) {
        throw new StoreUnavailableError('postgres', (error as Error).message, { cause: error });
      }
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
  static async open(url: string, poolSize?: number): Promise<PgStore> {
    const db = new PgConnection(url, poolSize);
    try {
      await migrate(db);
    } catch (error) {
      await db.close();
      throw error;
    }
    return new PgStore(db);
  }
}
