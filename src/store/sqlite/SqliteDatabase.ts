import { DatabaseSync } from "node:sqlite";
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { CourierError } from "../../errors.ts";
import { txnKey } from "./txnKey.ts";

/** How hard a commit waits for the disk. NORMAL in WAL survives a process crash; FULL a power cut. */
export type SqliteSynchronous = "NORMAL" | "FULL";

export interface SqliteOptions {
  /** Database file; `:memory:` for tests. */
  readonly path: string;
  /** @default "NORMAL" */
  readonly synchronous?: SqliteSynchronous;
}

// Each entry upgrades the schema by one version; never edit a shipped entry, append a new one.
const MIGRATIONS: readonly string[] = [
  // Integer keys keep the two indexes small: the txnId index takes random keys (hashes), and
  // its cost is the number of pages a commit dirties.
  `CREATE TABLE outbox_lanes (
     id INTEGER PRIMARY KEY,
     name TEXT NOT NULL UNIQUE
   );
   CREATE TABLE outbox (
     seq INTEGER PRIMARY KEY,
     txn_key INTEGER NOT NULL UNIQUE,
     txn_id TEXT NOT NULL,
     lane_id INTEGER NOT NULL REFERENCES outbox_lanes (id),
     kind TEXT NOT NULL,
     sender TEXT NOT NULL,
     method TEXT NOT NULL,
     path TEXT NOT NULL,
     body TEXT,
     state TEXT NOT NULL DEFAULT 'pending',
     attempts INTEGER NOT NULL DEFAULT 0,
     event_id TEXT,
     error TEXT,
     created_at INTEGER NOT NULL,
     settled_at INTEGER
   );
   CREATE INDEX outbox_pending ON outbox (lane_id, seq) WHERE state = 'pending';`,
  // The inbound journal. A transaction is keyed by its id AND the hash of its body: Synapse on
  // SQLite can restart its counter, and a reused id with another body is a new transaction.
  // AUTOINCREMENT: seq never goes back, even after pruning the newest items, so a dispatcher's
  // cursor (`pending(afterSeq)`) never skips an item journaled after a prune.
  `CREATE TABLE inbound_txns (
     txn_id TEXT NOT NULL,
     body_hash TEXT NOT NULL,
     received_at INTEGER NOT NULL,
     PRIMARY KEY (txn_id, body_hash)
   ) WITHOUT ROWID;
   CREATE TABLE inbound_items (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     txn_id TEXT NOT NULL,
     kind TEXT NOT NULL,
     lane TEXT NOT NULL,
     event_id TEXT,
     json TEXT NOT NULL,
     state TEXT NOT NULL DEFAULT 'pending',
     attempts INTEGER NOT NULL DEFAULT 0,
     error TEXT,
     settled_at INTEGER
   );
   CREATE INDEX inbound_items_pending ON inbound_items (seq) WHERE state = 'pending';`,
  // Plugins' own data: a key-value space per plugin (ctx.store) and the last slot each of its
  // schedules ran (bot.every), kept apart so a plugin's keys never collide with the framework's.
  `CREATE TABLE plugin_kv (
     plugin TEXT NOT NULL,
     key TEXT NOT NULL,
     value TEXT NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (plugin, key)
   ) WITHOUT ROWID;
   CREATE TABLE plugin_schedules (
     plugin TEXT NOT NULL,
     name TEXT NOT NULL,
     last_slot INTEGER NOT NULL,
     PRIMARY KEY (plugin, name)
   ) WITHOUT ROWID;`,
  // txn_key is now read off the txnId's own digest instead of hashing it again (see txnKey).
  // Rebuilt rather than updated in place: the unique index is built once, sorted, at the end,
  // instead of updated at random row by row (docs/decisions/0003-txn-key-from-digest.md).
  `CREATE TABLE outbox_v4 (
     seq INTEGER PRIMARY KEY,
     txn_key INTEGER NOT NULL,
     txn_id TEXT NOT NULL,
     lane_id INTEGER NOT NULL REFERENCES outbox_lanes (id),
     kind TEXT NOT NULL,
     sender TEXT NOT NULL,
     method TEXT NOT NULL,
     path TEXT NOT NULL,
     body TEXT,
     state TEXT NOT NULL DEFAULT 'pending',
     attempts INTEGER NOT NULL DEFAULT 0,
     event_id TEXT,
     error TEXT,
     created_at INTEGER NOT NULL,
     settled_at INTEGER
   );
   INSERT INTO outbox_v4 SELECT seq, courier_txn_key(txn_id), txn_id, lane_id, kind, sender, method, path,
     body, state, attempts, event_id, error, created_at, settled_at FROM outbox ORDER BY seq;
   DROP TABLE outbox;
   ALTER TABLE outbox_v4 RENAME TO outbox;
   CREATE UNIQUE INDEX outbox_txn_key ON outbox (txn_key);
   CREATE INDEX outbox_pending ON outbox (lane_id, seq) WHERE state = 'pending';`,
  // The txn keys are indexed in a file of their own now (see KeyIndexFile), committed once a
  // second instead of with every group commit.
  `DROP INDEX outbox_txn_key;`,
  // Pending rows by seq, not by lane: a row enters at the end and leaves from the front, where by
  // lane each group commit dirtied a page per lane. Lanes are listed in memory (PendingByLane).
  `DROP INDEX outbox_pending;
   CREATE INDEX outbox_pending ON outbox (seq, lane_id) WHERE state = 'pending';`,
  // Inbound items are deduplicated one by one, by key (`event:<event_id>`, or a fingerprint for
  // items without an id), not per transaction by a hash of its body: Synapse re-serialises a
  // retried transaction, so its bytes never match. Rows journaled twice by the old rule keep
  // a key of their own (`legacy:<seq>`).
  // Pending items are listed in a narrow table of their own, with their dispatch counts: an
  // item's row is written once, and handling it deletes a small row instead of rewriting the
  // item (a commit writes far fewer pages). `state` is NULL for an item handled or still
  // pending (in inbound_pending), `dead` or `rejected` (malformed, never dispatched) otherwise.
  // Rebuilt to make `state` nullable; the AUTOINCREMENT mark is carried over, so seq never goes back.
  `CREATE TABLE inbound_items_v7 (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     item_key TEXT NOT NULL,
     txn_id TEXT NOT NULL,
     kind TEXT NOT NULL,
     lane TEXT NOT NULL,
     event_id TEXT,
     json TEXT NOT NULL,
     received_at INTEGER NOT NULL,
     state TEXT,
     attempts INTEGER NOT NULL DEFAULT 0,
     error TEXT,
     settled_at INTEGER
   );
   INSERT INTO inbound_items_v7
     SELECT seq,
       CASE WHEN event_id IS NOT NULL AND seq IN
           (SELECT MIN(seq) FROM inbound_items WHERE event_id IS NOT NULL GROUP BY event_id)
         THEN 'event:' || event_id ELSE 'legacy:' || seq END,
       txn_id, kind, lane, event_id, json,
       COALESCE((SELECT MIN(t.received_at) FROM inbound_txns t WHERE t.txn_id = inbound_items.txn_id), 0),
       CASE state WHEN 'failed' THEN 'dead' ELSE NULL END,
       attempts, error, settled_at
     FROM inbound_items ORDER BY seq;
   CREATE TABLE inbound_pending (
     seq INTEGER PRIMARY KEY,
     attempts INTEGER NOT NULL
   );
   INSERT INTO inbound_pending SELECT seq, attempts FROM inbound_items WHERE state = 'pending';
   DELETE FROM sqlite_sequence WHERE name = 'inbound_items_v7';
   INSERT INTO sqlite_sequence (name, seq) SELECT 'inbound_items_v7', seq FROM sqlite_sequence WHERE name = 'inbound_items';
   DROP TABLE inbound_items;
   ALTER TABLE inbound_items_v7 RENAME TO inbound_items;
   CREATE UNIQUE INDEX inbound_items_key ON inbound_items (item_key);
   CREATE INDEX inbound_items_trouble ON inbound_items (state, seq) WHERE state IS NOT NULL;
   DROP TABLE inbound_txns;`,
  // A slot claimed by the instance running it (several instances on PostgreSQL; the same code here).
  `ALTER TABLE plugin_schedules ADD COLUMN running_holder TEXT;
   ALTER TABLE plugin_schedules ADD COLUMN running_until INTEGER;`,
  // Inbound item keys are indexed in a file of their own (`-itemkeys`, a KeyIndexFile), as the
  // outbox's txn keys are: event ids are random, and the unique index wrote a page per event.
  `DROP INDEX inbound_items_key;`,
];

/**
 * Opens the framework's SQLite file (WAL, so the CLI can read while the service writes) and
 * brings its schema up to date. Creates the parent folder; the file is private to its owner.
 */
export function openSqlite(options: SqliteOptions): DatabaseSync {
  const onDisk = options.path !== ":memory:";
  if (onDisk) privateFolder(dirname(options.path));
  const db = new DatabaseSync(options.path);
  if (onDisk) restrictToOwner(options.path);
  db.exec(
    `PRAGMA journal_mode = WAL; PRAGMA synchronous = ${options.synchronous ?? "NORMAL"}; PRAGMA busy_timeout = 5000;`,
  );
  migrate(db);
  return db;
}

/** A store's folder that group or others can enter and that courier cannot make private. */
export class StoreFolderError extends CourierError {
  readonly folder: string;
  constructor(folder: string, message: string, cause?: unknown) {
    super("COURIER_STORE_FOLDER", "M_UNKNOWN", 500, message, { cause });
    this.folder = folder;
  }
}

/**
 * Creates a store's folder, private to its owner (0700). `mkdirSync`'s mode only applies to a
 * folder it creates, so an existing one that group or others can enter is narrowed here; one
 * that is not ours (or cannot be narrowed) is refused, with what to do, before any file is made.
 * So is a folder that is plainly not the store's own: a shared one (sticky bit, as /tmp) or one
 * holding other folders (a home, /var/lib). Run as root, every such folder is "ours", and
 * narrowing it would lock everyone else out of it.
 */
export function privateFolder(folder: string): void {
  mkdirSync(folder, { recursive: true, mode: 0o700 });
  const stat = statSync(folder);
  if ((stat.mode & 0o077) === 0) return;
  const mode = (stat.mode & 0o7777).toString(8).padStart(4, "0");
  const fix = `give the store a folder of its own (store.path), or run chmod 700 on it as its owner`;
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) {
    throw new StoreFolderError(
      folder,
      `the store's folder ${folder} is mode ${mode} and owned by uid ${stat.uid}, not by this process (uid ${uid}): courier will not narrow another user's folder to 0700; ${fix}`,
    );
  }
  const sticky = (stat.mode & 0o1000) !== 0;
  const sub = sticky ? undefined : readdirSync(folder, { withFileTypes: true }).find((e) => e.isDirectory());
  if (sticky || sub) {
    const what = sub ? `holds other folders (${sub.name})` : "is shared (sticky bit)";
    throw new StoreFolderError(
      folder,
      `the store's folder ${folder} is mode ${mode} and ${what}: courier will not narrow a folder that is not the store's own to 0700; ${fix}`,
    );
  }
  try {
    chmodSync(folder, 0o700);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new StoreFolderError(
      folder,
      `the store's folder ${folder} is mode ${mode} and cannot be narrowed to 0700 (${code}); ${fix}`,
      error,
    );
  }
}

/**
 * Makes a database file private to its owner. Called before WAL mode: SQLite gives the -wal and
 * -shm files the mode of the database file, and ones left by a crash of an older version keep
 * theirs, so they are narrowed too.
 */
export function restrictToOwner(path: string): void {
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    if (file === path || existsSync(file)) chmodSync(file, 0o600);
  }
}

/** A store's database: the one another store already opened (shared), or its own. */
export function openOrShare(source: SqliteOptions | DatabaseSync): { db: DatabaseSync; owned: boolean } {
  return "prepare" in source ? { db: source, owned: false } : { db: openSqlite(source), owned: true };
}

function migrate(db: DatabaseSync): void {
  db.function("courier_txn_key", { deterministic: true }, (txnId) => txnKey(String(txnId)));
  const current = Number((db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version);
  if (current > MIGRATIONS.length) {
    throw new Error(
      `The database schema is version ${current}, newer than this courier (${MIGRATIONS.length}); upgrade courier.`,
    );
  }
  for (let version = current; version < MIGRATIONS.length; version++) {
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec(MIGRATIONS[version] as string);
      db.exec(`PRAGMA user_version = ${version + 1}`);
      db.exec("COMMIT");
    } catch (error) {
      db.exec("ROLLBACK");
      throw error;
    }
  }
}
