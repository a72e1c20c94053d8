import type pg from "pg";
import type { Logger } from "pino";
import { CourierError } from "../../errors.ts";
import type { InboundItem } from "../../inbound/InboundJournal.ts";
import type {
  CryptoStore,
  MirrorChange,
  MirrorStats,
  ParkedEvents,
  RecordOp,
  StoreSchema,
  StoredDatabase,
} from "../CryptoStore.ts";
import { inTransaction } from "./PgDatabase.ts";

/** The advisory lock of the process that runs the devices (`hashtext('courier_crypto')` would vary by version: a constant). */
const CRYPTO_LOCK = 0x636f7572; // "cour"
/** Pauses before a failed change is written again: doubling, at most 5 s. */
const RETRY_CAP_MS = 5_000;

/** Another instance runs the devices: one device's state must live in one process. */
export class CryptoStoreTakenError extends CourierError {
  constructor() {
    super(
      "COURIER_CRYPTO_TAKEN",
      "M_UNKNOWN",
      500,
      "Another instance on this database runs encryption: the devices' keys and sessions live in one process at a time. Run encryption on one instance (the others with encryption.enabled: false), or stop the other.",
    );
  }
}

/**
 * The crypto store on PostgreSQL (`store.url`; tables of migration 4). Changes are queued in
 * commit order and written one by one, each in one transaction; a failed write is retried until
 * it succeeds, because a change left out would leave the stored state behind the sdk's (the
 * changes are idempotent: upserts and deletes). `flushed()` is what the devices await before
 * journaling anything built on their state.
 *
 * The devices run in one process at a time: `claim()` takes a session advisory lock on a
 * connection of its own, released when the process (or its connection) dies.
 */
export class PgCryptoStore implements CryptoStore {
  readonly #pool: pg.Pool;
  readonly #log: Logger | undefined;
  #tail: Promise<void> = Promise.resolve();
  #holder: pg.PoolClient | undefined;
  readonly parked: ParkedEvents;

  constructor(pool: pg.Pool, log?: Logger) {
    this.#pool = pool;
    this.#log = log;
    this.parked = new PgParkedEvents(pool);
  }

  /** Makes this process the one that runs the devices; throws CryptoStoreTakenError otherwise. Does I/O. */
  async claim(): Promise<void> {
    if (this.#holder) return;
    const client = await this.#pool.connect();
    const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [
      CRYPTO_LOCK,
    ]);
    if (!rows[0]?.locked) {
      client.release();
      throw new CryptoStoreTakenError();
    }
    this.#holder = client;
  }

  write(change: MirrorChange): void {
    this.#tail = this.#tail.then(() => this.#writeUntilDone(change));
  }

  flushed(): Promise<void> {
    return this.#tail;
  }

  async #writeUntilDone(change: MirrorChange): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await inTransaction(this.#pool, (client) => apply(client, change));
        return;
      } catch (error) {
        const delay = Math.min(RETRY_CAP_MS, 100 * 2 ** (attempt - 1));
        this.#log?.warn({ err: error, attempt, delay }, "could not commit a crypto change; trying again");
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  async load(prefix: string): Promise<StoredDatabase[]> {
    const { rows } = await this.#pool.query<{ name: string; version: number; schema: string }>(
      "SELECT name, version, schema FROM crypto_idb_databases WHERE left(name, length($1)) = $1",
      [prefix],
    );
    const databases: StoredDatabase[] = [];
    for (const row of rows) {
      const records = await this.#pool.query<{ store: string; key: Buffer; value: Buffer }>(
        "SELECT store, key, value FROM crypto_idb_records WHERE db = $1",
        [row.name],
      );
      const generators = await this.#pool.query<{ store: string; num: number }>(
        "SELECT store, num FROM crypto_idb_key_generators WHERE db = $1",
        [row.name],
      );
      databases.push({
        name: row.name,
        version: row.version,
        schema: JSON.parse(row.schema) as StoreSchema[],
        records: records.rows.map((r) => ({
          store: r.store,
          key: new Uint8Array(r.key),
          value: new Uint8Array(r.value),
        })),
        generators: generators.rows,
      });
    }
    return databases;
  }

  async stats(): Promise<MirrorStats> {
    const { rows } = await this.#pool.query<{ databases: number; records: number; bytes: number }>(
      `SELECT (SELECT count(*)::integer FROM crypto_idb_databases) AS databases,
              count(*)::integer AS records,
              coalesce(sum(length(key) + length(value)), 0)::bigint::float8 AS bytes
         FROM crypto_idb_records`,
    );
    return rows[0]!;
  }

  async close(): Promise<void> {
    await this.#tail;
    if (this.#holder) {
      await this.#holder.query("SELECT pg_advisory_unlock($1)", [CRYPTO_LOCK]).catch(() => {});
      this.#holder.release();
      this.#holder = undefined;
    }
  }
}

async function apply(client: pg.PoolClient, change: MirrorChange): Promise<void> {
  if (change.kind === "records") {
    for (const op of change.ops) await applyOp(client, op);
    return;
  }
  const name = change.kind === "drop" ? change.name : change.database.name;
  for (const table of ["crypto_idb_databases", "crypto_idb_records", "crypto_idb_key_generators"]) {
    await client.query(
      `DELETE FROM ${table} WHERE ${table === "crypto_idb_databases" ? "name" : "db"} = $1`,
      [name],
    );
  }
  if (change.kind === "drop") return;
  const db = change.database;
  await client.query("INSERT INTO crypto_idb_databases (name, version, schema) VALUES ($1, $2, $3)", [
    db.name,
    db.version,
    JSON.stringify(db.schema),
  ]);
  for (const r of db.records) await applyOp(client, { kind: "put", db: db.name, ...r });
  for (const g of db.generators) await applyOp(client, { kind: "generator", db: db.name, ...g });
}

function applyOp(client: pg.PoolClient, op: RecordOp): Promise<unknown> {
  switch (op.kind) {
    case "put":
      return client.query({
        name: "crypto-put",
        text: `INSERT INTO crypto_idb_records (db, store, key, value) VALUES ($1, $2, $3, $4)
               ON CONFLICT (db, store, key) DO UPDATE SET value = EXCLUDED.value`,
        values: [op.db, op.store, Buffer.from(op.key), Buffer.from(op.value)],
      });
    case "delete":
      return client.query({
        name: "crypto-delete",
        text: "DELETE FROM crypto_idb_records WHERE db = $1 AND store = $2 AND key = $3",
        values: [op.db, op.store, Buffer.from(op.key)],
      });
    case "clear":
      return client.query("DELETE FROM crypto_idb_records WHERE db = $1 AND store = $2", [op.db, op.store]);
    case "generator":
      return client.query(
        `INSERT INTO crypto_idb_key_generators (db, store, num) VALUES ($1, $2, $3)
         ON CONFLICT (db, store) DO UPDATE SET num = EXCLUDED.num`,
        [op.db, op.store, op.num],
      );
  }
}

class PgParkedEvents implements ParkedEvents {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async park(eventId: string, sessionId: string, item: InboundItem): Promise<void> {
    await this.#pool.query(
      `INSERT INTO crypto_parked_events (event_id, session_id, item, parked_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (event_id) DO NOTHING`,
      [eventId, sessionId, JSON.stringify({ ...item, payload: undefined }), Date.now()],
    );
  }

  async waitingFor(sessionId: string): Promise<InboundItem[]> {
    const { rows } = await this.#pool.query<{ item: string }>(
      "SELECT item FROM crypto_parked_events WHERE session_id = $1 ORDER BY parked_at",
      [sessionId],
    );
    return rows.map((row) => JSON.parse(row.item) as InboundItem);
  }

  async sessions(): Promise<string[]> {
    const { rows } = await this.#pool.query<{ session_id: string }>(
      "SELECT DISTINCT session_id FROM crypto_parked_events",
    );
    return rows.map((row) => row.session_id);
  }

  async done(eventId: string): Promise<void> {
    await this.#pool.query("DELETE FROM crypto_parked_events WHERE event_id = $1", [eventId]);
  }

  async count(): Promise<number> {
    const { rows } = await this.#pool.query<{ n: number }>(
      "SELECT count(*)::integer AS n FROM crypto_parked_events",
    );
    return rows[0]!.n;
  }

  async prune(before: number): Promise<number> {
    const { rowCount } = await this.#pool.query("DELETE FROM crypto_parked_events WHERE parked_at < $1", [
      before,
    ]);
    return rowCount ?? 0;
  }
}
