/**
 * A PostgreSQL database of a test's own on the machine's server (127.0.0.1:5432,
 * user postgres, trust authentication; UPFLEET_TEST_POSTGRES overrides the server
 * URL): created with a random name, dropped (with its connections) afterwards.
 * An unreachable server fails the test loudly: these tests are part of the suite.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const TEST_POSTGRES = process.env.UPFLEET_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_POSTGRES, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (cause) {
    throw new Error(`PostgreSQL is required for this test and is unreachable at ${TEST_POSTGRES} (set UPFLEET_TEST_POSTGRES): ${(cause as Error).message}`, { cause });
  }
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function createTestDatabase(label = 'director'): Promise<TestDatabase> {
  const name = `upfleet_test_${label}_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(TEST_POSTGRES);
  url.pathname = `/${name}`;
  return {
    url: url.toString(), name,
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}
