import pg from "pg";
import { CourierError } from "../../errors.ts";
import { PG_MIGRATIONS } from "./migrations.ts";

/** The schema in the database is newer than this courier knows: refuse rather than guess. */
export class SchemaTooNewError extends CourierError {
  constructor(found: number, known: number) {
    super(
      "COURIER_STORE_SCHEMA_NEWER",
      "M_UNKNOWN",
      500,
      `The PostgreSQL schema is version ${found}, newer than this courier knows (${known}): another instance was upgraded; upgrade this one too.`,
    );
  }
}

export interface PgOptions {
  /** `postgres://user:password@host:port/database`. */
  readonly url: string;
  /** Connections kept. @default 10 */
  readonly poolSize?: number;
}

// int8 (seqs, ms times) as numbers: they stay far below 2^53.
const INT8 = 20;
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** One advisory lock id for migrations, the same in every instance: "couri" in ASCII. */
const MIGRATION_LOCK = 0x636f757269;

/**
 * A connection pool to the framework's PostgreSQL database (connections are made on first use).
 * Connection errors of idle clients go to `onIdleError` instead of crashing the process: the pool
 * replaces those clients.
 */
export function createPool(options: PgOptions, onIdleError: (error: Error) => void = () => {}): pg.Pool {
  const pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 10, types });
  pool.on("error", onIdleError);
  return pool;
}

/**
 * Brings the schema up to date, under an advisory lock so that instances starting together
 * migrate once. Refuses a schema newer than this code (SchemaTooNewError).
 */
export async function migratePostgres(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    await client.query("CREATE TABLE IF NOT EXISTS courier_schema (version integer NOT NULL)");
    const { rows } = await client.query<{ version: number }>(
      "SELECT max(version) AS version FROM courier_schema",
    );
    const current = rows[0]?.version ?? 0;
    if (current > PG_MIGRATIONS.length) throw new SchemaTooNewError(current, PG_MIGRATIONS.length);
    for (let version = current; version < PG_MIGRATIONS.length; version++) {
      await client.query("BEGIN");
      try {
        await client.query(PG_MIGRATIONS[version]!);
        await client.query("INSERT INTO courier_schema (version) VALUES ($1)", [version + 1]);
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK");
        throw error;
      }
    }
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => {});
    client.release();
  }
}

/**
 * An error text as PostgreSQL can keep it: its text and jsonb cannot hold NUL (U+0000), which a
 * handler's error or a homeserver's message may carry (from a user's message, say). Shown as
 * U+FFFD rather than failing the commit that records the outcome, and the others with it.
 */
export function withoutNul(text: string): string {
  return text.includes("\u0000") ? text.replaceAll("\u0000", "\uFFFD") : text;
}

/** Runs `work` in one transaction on one client of the pool; rolls back when it throws. */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    // A client whose ROLLBACK fails (its connection is gone) is destroyed, not pooled again.
    await client.query("ROLLBACK").catch(() => (broken = true));
    throw error;
  } finally {
    client.release(broken);
  }
}

/** The schema version a database is at (0: never migrated), and the one this code knows. Does I/O. */
export async function schemaVersion(pool: pg.Pool): Promise<{ found: number; known: number }> {
  const { rows } = await pool.query<{ version: number | null }>(
    "SELECT CASE WHEN to_regclass('courier_schema') IS NULL THEN 0 ELSE (SELECT max(version) FROM courier_schema) END AS version",
  );
  return { found: rows[0]?.version ?? 0, known: PG_MIGRATIONS.length };
}
