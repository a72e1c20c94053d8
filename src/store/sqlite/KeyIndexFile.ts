import { DatabaseSync, type StatementSync } from "node:sqlite";
import { rmSync } from "node:fs";
import { restrictToOwner } from "./SqliteDatabase.ts";
import { WalCheckpointer } from "./WalCheckpointer.ts";

/** How often the index's own transaction is committed (and how much a crash can make us re-read). */
const COMMIT_INTERVAL_MS = 1000;
/**
 * The index's page cache. Keys are random, so each insert lands on any leaf: once the index
 * outgrows SQLite's default 2 MB cache, inserts read pages back from the OS.
 */
const CACHE_KIB = 32 * 1024;
/** A commit this slow hands the index's checkpoints to a worker (see `#checkpointer`). */
const SLOW_COMMIT_MS = 10;

/** Which journal table a key index covers, and how its file names things. */
export interface KeyIndexShape {
  /** The file is `<journal>-<suffix>`. */
  readonly suffix: string;
  /** The journal table, whose rows have a `seq`. */
  readonly table: string;
  /** The column of the table that holds each row's key (unique among the rows). */
  readonly key: string;
  readonly keyType: "INTEGER" | "TEXT";
  /** A column that names a row, for the mark: another journal's row at that seq has another. */
  readonly id: string;
  /** What a second writer is told it collides on ("this outbox store"). */
  readonly owner: string;
}

/** The outbox's txn keys (`<store.path>-txnkeys`). */
export const OUTBOX_TXN_KEYS: KeyIndexShape = {
  suffix: "txnkeys",
  table: "outbox",
  key: "txn_key",
  keyType: "INTEGER",
  id: "txn_id",
  owner: "outbox store",
};

/** The inbound journal's item keys (`<store.path>-itemkeys`). */
export const INBOUND_ITEM_KEYS: KeyIndexShape = {
  suffix: "itemkeys",
  table: "inbound_items",
  key: "item_key",
  keyType: "TEXT",
  id: "item_key",
  owner: "inbound journal",
};

/**
 * Which journal row holds each key, in a file of its own beside the store file. Why not a
 * UNIQUE index in the journal: the keys are random (digests, event ids), so each commit wrote
 * about one index page per row, and more as the journal grew
 * (docs/decisions/0004-txn-key-index-file.md, 0018-item-key-index-file.md).
 * Here one process (the writer) keeps a write transaction open and commits it once a second, so
 * a page takes many keys between two writes.
 *
 * The journal stays the truth and this file is a cache of it:
 * - it records the last journal row it covers (its seq and `KeyIndexShape.id`); rows after it, whose keys a crash
 *   lost, are indexed again when a writer starts;
 * - a file that is missing, unreadable, or whose last row is not in the journal (another
 *   journal, or one restored from a backup) is rebuilt from every row;
 * - an entry whose row is gone (pruned, lost with a power cut) is taken by the next row with
 *   that key.
 *
 * The lock on this file's write transaction also keeps a second process from inserting into the
 * same journal.
 */
export class KeyIndexFile<Key extends bigint | string> {
  readonly #journal: DatabaseSync;
  readonly #path: string;
  readonly #db: DatabaseSync;
  /**
   * The writer's checkpoints in a worker, once SQLite's own (inside the commit) got slow: in a
   * large index a commit writes thousands of pages, and checkpointing them inside the commit
   * stalled the writer several times as long as the commit itself. Not from the start: a worker's
   * memory is more than a small index is worth (docs/decisions/0005-checkpoints-off-the-writer.md).
   */
  #checkpointer: WalCheckpointer | undefined;
  readonly #seqOf: StatementSync;
  readonly #claim: StatementSync;
  readonly #repoint: StatementSync;
  readonly #remove: StatementSync;
  readonly #readMark: StatementSync;
  readonly #writeMark: StatementSync;
  readonly #journalId: StatementSync;
  readonly #shape: KeyIndexShape;
  /** This connection holds the write transaction: every journal row is indexed in it. */
  #writing = false;
  #committedAt = 0;
  /** Keys claimed in the journal transaction under way. */
  readonly #claimed: Array<[Key, number]> = [];
  /** The last journal row indexed in the open transaction (committed in the journal). */
  #mark: Mark = { seq: 0, id: "" };

  constructor(journal: DatabaseSync, shape: KeyIndexShape) {
    this.#journal = journal;
    this.#shape = shape;
    const { key, id, table } = shape;
    const location = journal.location();
    this.#path = location === null ? ":memory:" : `${location}-${shape.suffix}`;
    this.#db = openIndexFile(this.#path, shape);
    // The index file's tables are named after the journal's column: `txn_keys (txn_key, seq)`.
    this.#seqOf = this.#db.prepare(`SELECT seq FROM ${key}s WHERE ${key} = ?`);
    this.#claim = this.#db.prepare(`INSERT INTO ${key}s (${key}, seq) VALUES (?, ?) ON CONFLICT DO NOTHING`);
    this.#repoint = this.#db.prepare(`INSERT OR REPLACE INTO ${key}s (${key}, seq) VALUES (?, ?)`);
    this.#remove = this.#db.prepare(`DELETE FROM ${key}s WHERE ${key} = ? AND seq = ?`);
    this.#readMark = this.#db.prepare(`SELECT seq, ${id} AS id FROM indexed WHERE id = 1`);
    this.#writeMark = this.#db.prepare(`INSERT OR REPLACE INTO indexed (id, seq, ${id}) VALUES (1, ?, ?)`);
    this.#journalId = journal.prepare(`SELECT ${id} AS id FROM ${table} WHERE seq = ?`);
  }

  /** The journal row indexed under `key`, if any; it may be gone or hold another row now. */
  seqOf(key: Key): number | undefined {
    return (this.#seqOf.get(key) as { seq: number } | undefined)?.seq;
  }

  /**
   * Journal rows after this seq may be missing from the index (a writer elsewhere has not
   * committed them yet, or this file is stale): a reader looks for them in the journal itself.
   * Undefined for the writer, whose index holds every row.
   */
  unindexedAfter(): number | undefined {
    if (this.#writing) return undefined;
    const mark = this.#readMark.get() as Mark | undefined;
    return mark && this.#inJournal(mark) ? mark.seq : 0;
  }

  /**
   * Takes the write transaction and indexes what the journal holds beyond this file; the first
   * time after an upgrade, or with a file that does not match the journal, that is every row.
   * Throws when another process is writing the journal.
   */
  beginWriting(): void {
    if (this.#writing) return;
    try {
      this.#db.exec("BEGIN IMMEDIATE");
    } catch (error) {
      throw new Error(
        `Another process is writing this ${this.#shape.owner} (its key index is locked); run one courier per store.path.`,
        { cause: error },
      );
    }
    try {
      const { key, id, table } = this.#shape;
      let mark = this.#readMark.get() as Mark | undefined;
      if (!mark || !this.#inJournal(mark)) {
        this.#db.exec(`DELETE FROM ${key}s`);
        mark = { seq: 0, id: "" };
      }
      // In key order: a rebuild then appends to the index instead of inserting at random, which
      // is much slower on a large journal.
      const rows = this.#journal.prepare(
        `SELECT seq, ${key} AS key, ${id} AS id FROM ${table} WHERE seq > ? ORDER BY ${key}`,
      );
      rows.setReadBigInts(true);
      for (const row of rows.iterate(mark.seq) as Iterable<{ seq: bigint; key: Key; id: string }>) {
        this.#repoint.run(row.key, row.seq);
        if (Number(row.seq) > mark.seq) mark = { seq: Number(row.seq), id: row.id };
      }
      this.#mark = mark;
      this.#writeMark.run(mark.seq, mark.id);
      this.#db.exec("COMMIT; BEGIN IMMEDIATE");
      this.#committedAt = performance.now();
      this.#writing = true;
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  /** Indexes `seq` under `key` unless the key is taken; returns the seq that holds it then. */
  claim(key: Key, seq: number): number | undefined {
    if (this.#claim.run(key, seq).changes === 0) return this.seqOf(key);
    this.#claimed.push([key, seq]);
    return undefined;
  }

  /** Gives a key whose row is gone to `seq`. */
  repoint(key: Key, seq: number): void {
    this.#repoint.run(key, seq);
    this.#claimed.push([key, seq]);
  }

  /** Forgets the keys of rows deleted from the journal (inside the deleting transaction). */
  forget(rows: ReadonlyArray<{ seq: number; key: Key }>): void {
    for (const row of rows) this.#remove.run(row.key, row.seq);
    if (rows.some((row) => row.seq === this.#mark.seq)) {
      // The mark must be a row the journal still holds, or the next start rebuilds everything.
      const { id, table } = this.#shape;
      const newest = this.#journal
        .prepare(`SELECT seq, ${id} AS id FROM ${table} ORDER BY seq DESC LIMIT 1`)
        .get() as Mark | undefined;
      this.#mark = newest ? { seq: newest.seq, id: newest.id } : { seq: 0, id: "" };
    }
  }

  /**
   * Runs `work`, a journal transaction; `last` tells the last row it inserted, the new mark. If it
   * fails, the keys it claimed are taken back. (Not with a savepoint: that copies every page it
   * touches to a sub-journal first, and costs as much as the index it replaces.) Should that fail
   * too, the keys left point at rows that are not there, which `claim`'s callers treat as gone.
   */
  follow<T>(work: () => T, last: () => Mark | undefined): T {
    if (!this.#writing) return work();
    this.#claimed.length = 0;
    let result: T;
    try {
      result = work();
    } catch (error) {
      try {
        for (const [key, seq] of this.#claimed) this.#remove.run(key, seq);
      } catch {
        // The entries left point at rows that are not there, which are never trusted.
      }
      throw error;
    }
    this.#mark = last() ?? this.#mark;
    if (performance.now() - this.#committedAt >= COMMIT_INTERVAL_MS) this.#commit();
    return result;
  }

  /** Commits what the open transaction holds; the next writer starts from here. */
  async close(): Promise<void> {
    if (this.#writing) {
      this.#writeMark.run(this.#mark.seq, this.#mark.id);
      this.#db.exec("COMMIT");
      this.#writing = false;
    }
    await this.#checkpointer?.stop();
    this.#db.close();
  }

  #commit(): void {
    try {
      const started = performance.now();
      this.#writeMark.run(this.#mark.seq, this.#mark.id);
      this.#db.exec("COMMIT");
      if (!this.#checkpointer && this.#path !== ":memory:" && performance.now() - started > SLOW_COMMIT_MS) {
        this.#checkpointer = new WalCheckpointer(this.#db, this.#path, COMMIT_INTERVAL_MS);
      }
      this.#db.exec("BEGIN IMMEDIATE");
      this.#committedAt = performance.now();
    } catch {
      // The journal transaction did commit; only keys may be lost, and the next writer start
      // (before the next insert) indexes the journal again from the file's mark.
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      this.#writing = false;
    }
  }

  #inJournal(mark: Mark): boolean {
    if (mark.seq === 0) return true;
    const row = this.#journalId.get(mark.seq) as { id: string } | undefined;
    return row?.id === mark.id;
  }
}

/** The last journal row an index covers: its seq, and what names it (`KeyIndexShape.id`). */
export interface Mark {
  readonly seq: number;
  readonly id: string;
}

const schema = ({ key, keyType, id }: KeyIndexShape) =>
  `CREATE TABLE IF NOT EXISTS ${key}s (${key} ${keyType} PRIMARY KEY, seq INTEGER NOT NULL)${keyType === "TEXT" ? " WITHOUT ROWID" : ""};
  CREATE TABLE IF NOT EXISTS indexed (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, ${id} TEXT NOT NULL);`;

/** Opens the index file; one that SQLite cannot read is deleted and made again (it is a cache). */
function openIndexFile(path: string, shape: KeyIndexShape): DatabaseSync {
  const open = () => {
    const db = new DatabaseSync(path);
    try {
      if (path !== ":memory:") restrictToOwner(path);
      // NORMAL in WAL: a power cut may lose the last commits, never the file; the journal has them.
      db.exec(
        `PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 1000;
         PRAGMA cache_size = -${CACHE_KIB}; ${schema(shape)}`,
      );
      return db;
    } catch (error) {
      db.close();
      throw error;
    }
  };
  try {
    return open();
  } catch (error) {
    // Only a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB) is replaced, never a locked one.
    const code = ((error as { errcode?: number }).errcode ?? 0) & 0xff;
    if (path === ":memory:" || (code !== 11 && code !== 26)) throw error;
    for (const file of [path, `${path}-wal`, `${path}-shm`]) rmSync(file, { force: true });
    return open();
  }
}
