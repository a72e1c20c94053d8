import { chmodSync, closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
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

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS idb_databases (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    schema TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS idb_records (
    db TEXT NOT NULL,
    store TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (db, store, key)
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS idb_key_generators (
    db TEXT NOT NULL,
    store TEXT NOT NULL,
    num REAL NOT NULL,
    PRIMARY KEY (db, store)
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS parked_events (
    event_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    item TEXT NOT NULL,
    parked_at INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS parked_by_session ON parked_events (session_id);
`;

/**
 * The crypto store in a SQLite file of its own (`encryption.path`): every change is committed
 * before `write` returns, so it is on disk before the sdk's call that made it returns.
 */
export class SqliteCryptoStore implements CryptoStore {
  readonly #sql: DatabaseSync;
  readonly #put: StatementSync;
  readonly #delete: StatementSync;
  readonly #clear: StatementSync;
  readonly #generator: StatementSync;
  readonly parked: ParkedEvents;

  /** Opens (creating, mode 0600) the file. Synchronous I/O. */
  constructor(file: string) {
    if (file !== ":memory:") {
      mkdirSync(dirname(file), { recursive: true });
      // Created 0600 before SQLite sees it (its -wal and -shm take the main file's mode); an
      // existing file is narrowed too: it holds every private key of the devices.
      closeSync(openSync(file, "a", 0o600));
      chmodSync(file, 0o600);
    }
    this.#sql = new DatabaseSync(file);
    // FULL: the WAL is fsynced at every commit. NORMAL would survive a process crash, but a power
    // cut could then lose the last crypto commits while a later outbox row built on them (a
    // message encrypted with an advanced Megolm ratchet, a claimed one-time key) survives in its
    // own file: the restored device would reuse ratchet indexes or lose Olm sessions.
    this.#sql.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; ${SCHEMA}`);
    this.#put = this.#sql.prepare(
      "INSERT OR REPLACE INTO idb_records (db, store, key, value) VALUES (?, ?, ?, ?)",
    );
    this.#delete = this.#sql.prepare("DELETE FROM idb_records WHERE db = ? AND store = ? AND key = ?");
    this.#clear = this.#sql.prepare("DELETE FROM idb_records WHERE db = ? AND store = ?");
    this.#generator = this.#sql.prepare(
      "INSERT OR REPLACE INTO idb_key_generators (db, store, num) VALUES (?, ?, ?)",
    );
    this.parked = new SqliteParkedEvents(this.#sql);
  }

  write(change: MirrorChange): void {
    this.#sql.exec("BEGIN IMMEDIATE");
    try {
      if (change.kind === "records") {
        for (const op of change.ops) this.#apply(op);
      } else {
        this.#drop(change.kind === "drop" ? change.name : change.database.name);
        if (change.kind === "database") this.#insertDatabase(change.database);
      }
      this.#sql.exec("COMMIT");
    } catch (err) {
      if (this.#sql.isTransaction) this.#sql.exec("ROLLBACK");
      throw err;
    }
  }

  flushed(): Promise<void> {
    return Promise.resolve();
  }

  #apply(op: RecordOp): void {
    if (op.kind === "put") this.#put.run(op.db, op.store, op.key, op.value);
    else if (op.kind === "delete") this.#delete.run(op.db, op.store, op.key);
    else if (op.kind === "clear") this.#clear.run(op.db, op.store);
    else this.#generator.run(op.db, op.store, op.num);
  }

  #insertDatabase(db: StoredDatabase): void {
    this.#sql
      .prepare("INSERT INTO idb_databases (name, version, schema) VALUES (?, ?, ?)")
      .run(db.name, db.version, JSON.stringify(db.schema));
    for (const r of db.records) this.#put.run(db.name, r.store, r.key, r.value);
    for (const g of db.generators) this.#generator.run(db.name, g.store, g.num);
  }

  #drop(name: string): void {
    this.#sql.prepare("DELETE FROM idb_databases WHERE name = ?").run(name);
    this.#sql.prepare("DELETE FROM idb_records WHERE db = ?").run(name);
    this.#sql.prepare("DELETE FROM idb_key_generators WHERE db = ?").run(name);
  }

  async load(prefix: string): Promise<StoredDatabase[]> {
    const rows = this.#sql
      .prepare("SELECT name, version, schema FROM idb_databases WHERE substr(name, 1, length(?)) = ?")
      .all(prefix, prefix) as { name: string; version: number; schema: string }[];
    const records = this.#sql.prepare("SELECT store, key, value FROM idb_records WHERE db = ?");
    const generators = this.#sql.prepare("SELECT store, num FROM idb_key_generators WHERE db = ?");
    return rows.map((row) => ({
      name: row.name,
      version: row.version,
      schema: JSON.parse(row.schema) as StoreSchema[],
      records: records.all(row.name) as { store: string; key: Uint8Array; value: Uint8Array }[],
      generators: generators.all(row.name) as { store: string; num: number }[],
    }));
  }

  async stats(): Promise<MirrorStats> {
    const count = (sql: string) => (this.#sql.prepare(sql).get() as { n: number | null }).n ?? 0;
    return {
      databases: count("SELECT count(*) AS n FROM idb_databases"),
      records: count("SELECT count(*) AS n FROM idb_records"),
      bytes: count("SELECT sum(length(key) + length(value)) AS n FROM idb_records"),
    };
  }

  async close(): Promise<void> {
    if (this.#sql.isOpen) this.#sql.close();
  }
}

class SqliteParkedEvents implements ParkedEvents {
  readonly #sql: DatabaseSync;

  constructor(sql: DatabaseSync) {
    this.#sql = sql;
  }

  async park(eventId: string, sessionId: string, item: InboundItem): Promise<void> {
    this.#sql
      .prepare(
        "INSERT OR IGNORE INTO parked_events (event_id, session_id, item, parked_at) VALUES (?, ?, ?, ?)",
      )
      .run(eventId, sessionId, JSON.stringify({ ...item, payload: undefined }), Date.now());
  }

  async waitingFor(sessionId: string): Promise<InboundItem[]> {
    return this.#sql
      .prepare("SELECT item FROM parked_events WHERE session_id = ? ORDER BY parked_at")
      .all(sessionId)
      .map((row) => JSON.parse(row.item as string) as InboundItem);
  }

  async sessions(): Promise<string[]> {
    return this.#sql
      .prepare("SELECT DISTINCT session_id FROM parked_events")
      .all()
      .map((row) => row.session_id as string);
  }

  async done(eventId: string): Promise<void> {
    this.#sql.prepare("DELETE FROM parked_events WHERE event_id = ?").run(eventId);
  }

  async count(): Promise<number> {
    return (this.#sql.prepare("SELECT count(*) AS n FROM parked_events").get() as { n: number }).n;
  }

  async prune(before: number): Promise<number> {
    return Number(this.#sql.prepare("DELETE FROM parked_events WHERE parked_at < ?").run(before).changes);
  }
}
