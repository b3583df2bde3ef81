/**
 * DirectorStore on SQLite (better-sqlite3), one file, WAL journal: the embedded
 * default. Invariants:
 * - better-sqlite3 is synchronous and one connection holds one transaction, so
 *   this store runs one transaction (or one statement outside any) at a time:
 *   the others wait their turn on an async queue. Calls made inside a
 *   transaction's async context join it.
 * - A transaction starts with BEGIN IMMEDIATE: it holds the database's write
 *   lock from its first statement, so transactions of several processes (or of
 *   several stores on one file) run one after the other and never build on a
 *   stale read. While another holds the lock, BEGIN is retried asynchronously
 *   (the event loop keeps running) until BUSY_DEADLINE_MS, then
 *   StoreUnavailableError. Statements carry busy_timeout for the rest.
 * - Row locks are no-ops: the write lock already covers the whole file.
 * - Statements are prepared once.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import Database from 'better-sqlite3';
import { StoreUnavailableError } from './errors.ts';
import { migrate } from './migrations.ts';
import { SqlStore, type Row, type SqlConnection } from './sql-store.ts';

/** How long a transaction waits for another writer's lock before giving up. */
const BUSY_DEADLINE_MS = 30_000;
/** busy_timeout of single statements (a checkpoint or another process's commit in progress). */
const STATEMENT_BUSY_MS = 5_000;

interface Tx {
  open: boolean;
  savepoints: number;
}

const bind = (params: unknown[]) => params.map((p) => (typeof p === 'boolean' ? (p ? 1 : 0) : p));
const isBusy = (e: unknown) => (e as { code?: string } | undefined)?.code?.startsWith('SQLITE_BUSY') ?? false;

export class SqliteConnection implements SqlConnection {
  readonly dialect = 'sqlite';
  readonly #db: Database.Database;
  readonly #stmts = new Map<string, Database.Statement>();
  readonly #context = new AsyncLocalStorage<Tx>();
  /** The tail of the queue of transactions and lone statements, and how many are in it. */
  #queue: Promise<unknown> = Promise.resolve();
  #queued = 0;

  constructor(path: string) {
    this.#db = new Database(path, { timeout: STATEMENT_BUSY_MS });
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('foreign_keys = ON');
  }

  #stmt(sql: string): Database.Statement {
    let s = this.#stmts.get(sql);
    if (!s) {
      s = this.#db.prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  #current(): Tx | undefined {
    const tx = this.#context.getStore();
    return tx?.open ? tx : undefined;
  }

  /** Runs fn after everything queued before it, alone on the connection. */
  #exclusive<T>(fn: () => Promise<T> | T): Promise<T> {
    this.#queued++;
    const run = this.#queue.then(() => fn()).finally(() => this.#queued--);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async all(sql: string, params: unknown[] = []): Promise<Row[]> {
    // A read needs a turn only while a transaction is open (it must not see uncommitted rows).
    // No named closure on the common path: the bundle's keepNames makes each one cost a defineProperty.
    if (this.#current() || this.#queued === 0) return this.#stmt(sql).all(...bind(params)) as Row[];
    return this.#exclusive(() => this.#stmt(sql).all(...bind(params)) as Row[]);
  }

  async run(sql: string, params: unknown[] = []): Promise<void> {
    if (this.#current()) {
      this.#stmt(sql).run(...bind(params));
      return;
    }
    await this.transaction(async () => void this.#stmt(sql).run(...bind(params)));
  }

  async exec(sql: string): Promise<void> {
    if (this.#current()) this.#db.exec(sql);
    else await this.transaction(async () => this.#db.exec(sql));
  }

  async lockRow(): Promise<void> {}

  inTransaction(): boolean {
    return this.#current() !== undefined;
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    const outer = this.#current();
    if (outer) return this.#savepoint(outer, fn);
    return this.#exclusive(async () => {
      await this.#begin();
      const tx: Tx = { open: true, savepoints: 0 };
      try {
        const result = await this.#context.run(tx, fn);
        this.#db.exec('COMMIT');
        return result;
      } catch (error) {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
        throw error;
      } finally {
        tx.open = false;
      }
    });
  }

  async #savepoint<T>(tx: Tx, fn: () => Promise<T>): Promise<T> {
    const name = `sp${++tx.savepoints}`;
    this.#db.exec(`SAVEPOINT ${name}`);
    try {
      const result = await fn();
      this.#db.exec(`RELEASE ${name}`);
      return result;
    } catch (error) {
      this.#db.exec(`ROLLBACK TO ${name}`);
      this.#db.exec(`RELEASE ${name}`);
      throw error;
    } finally {
      tx.savepoints--;
    }
  }

  /** BEGIN IMMEDIATE, retried without blocking the event loop while another connection writes. */
  async #begin(): Promise<void> {
    const deadline = Date.now() + BUSY_DEADLINE_MS;
    for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
      this.#db.pragma('busy_timeout = 0');
      try {
        this.#db.exec('BEGIN IMMEDIATE');
        return;
      } catch (error) {
        if (!isBusy(error)) throw error;
        if (Date.now() > deadline) throw new StoreUnavailableError('sqlite', `the database stayed locked by another writer for ${BUSY_DEADLINE_MS} ms`, { cause: error });
      } finally {
        this.#db.pragma(`busy_timeout = ${STATEMENT_BUSY_MS}`);
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  async close(): Promise<void> {
    await this.#exclusive(() => this.#db.close());
  }
}

export class SqliteStore extends SqlStore {
  /** Opens (creating when absent) and migrates the database at `path`. @throws DatabaseConfigError, SqliteError */
  static async open(path: string): Promise<SqliteStore> {
    const db = new SqliteConnection(path);
    try {
      await migrate(db);
    } catch (error) {
      await db.close();
      throw error;
    }
    return new SqliteStore(db);
  }
}
