import { DatabaseSync, type StatementSync } from "node:sqlite";
import { rmSync } from "node:fs";
import { restrictToOwner } from "./SqliteDatabase.ts";
import { WalCheckpointer } from "./WalCheckpointer.ts";

/** How often the index's own transaction is committed (and how much a crash can make us re-read). */
const COMMIT_INTERVAL_MS = 1000;
/** A commit this slow hands the index's checkpoints to a worker (see `#checkpointer`). */
const SLOW_COMMIT_MS = 10;

/**
 * Which outbox row holds each txn key, in a file of its own beside the store file
 * (`<journal>-txnkeys`). Why not a UNIQUE index in the journal: txn keys are random, so each
 * group commit wrote about one index page per row, and more as the journal grew
 * (docs/decisions/0004-txn-key-index-file.md).
 * Here one process (the writer) keeps a write transaction open and commits it once a second, so
 * a page takes many keys between two writes.
 *
 * The journal stays the truth and this file is a cache of it:
 * - it records the last journal row it covers (seq and txnId); rows after it, whose keys a crash
 *   lost, are indexed again when a writer starts;
 * - a file that is missing, unreadable, or whose last row is not in the journal (another
 *   journal, or one restored from a backup) is rebuilt from every row;
 * - an entry whose row is gone (pruned, lost with a power cut) is taken by the next row with
 *   that key.
 *
 * The lock on this file's write transaction also keeps a second process from inserting into the
 * same journal.
 */
export class TxnKeyIndex {
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
  readonly #journalTxnId: StatementSync;
  /** This connection holds the write transaction: every journal row is indexed in it. */
  #writing = false;
  #committedAt = 0;
  /** Keys claimed in the journal transaction under way. */
  readonly #claimed: Array<[bigint, number]> = [];
  /** The last journal row indexed in the open transaction (committed in the journal). */
  #mark = { seq: 0, txnId: "" };

  constructor(journal: DatabaseSync) {
    this.#journal = journal;
    const location = journal.location();
    this.#path = location === null ? ":memory:" : `${location}-txnkeys`;
    this.#db = openIndexFile(this.#path);
    this.#seqOf = this.#db.prepare("SELECT seq FROM txn_keys WHERE txn_key = ?");
    this.#claim = this.#db.prepare(
      "INSERT INTO txn_keys (txn_key, seq) VALUES (?, ?) ON CONFLICT DO NOTHING",
    );
    this.#repoint = this.#db.prepare("INSERT OR REPLACE INTO txn_keys (txn_key, seq) VALUES (?, ?)");
    this.#remove = this.#db.prepare("DELETE FROM txn_keys WHERE txn_key = ? AND seq = ?");
    this.#readMark = this.#db.prepare("SELECT seq, txn_id AS txnId FROM indexed WHERE id = 1");
    this.#writeMark = this.#db.prepare("INSERT OR REPLACE INTO indexed (id, seq, txn_id) VALUES (1, ?, ?)");
    this.#journalTxnId = journal.prepare("SELECT txn_id FROM outbox WHERE seq = ?");
  }

  /** The journal row indexed under `key`, if any; it may be gone or hold another txnId. */
  seqOf(key: bigint): number | undefined {
    return (this.#seqOf.get(key) as { seq: number } | undefined)?.seq;
  }

  /**
   * Journal rows after this seq may be missing from the index (a writer elsewhere has not
   * committed them yet, or this file is stale): a reader looks for them in the journal itself.
   * Undefined for the writer, whose index holds every row.
   */
  unindexedAfter(): number | undefined {
    if (this.#writing) return undefined;
    const mark = this.#readMark.get() as { seq: number; txnId: string } | undefined;
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
        "Another process is writing this outbox store (its txn key index is locked); run one courier per store.path.",
        { cause: error },
      );
    }
    try {
      let mark = this.#readMark.get() as { seq: number; txnId: string } | undefined;
      if (!mark || !this.#inJournal(mark)) {
        this.#db.exec("DELETE FROM txn_keys");
        mark = { seq: 0, txnId: "" };
      }
      // In key order: a rebuild then appends to the index instead of inserting at random, which
      // is much slower on a large journal.
      const rows = this.#journal.prepare(
        "SELECT seq, txn_key, txn_id FROM outbox WHERE seq > ? ORDER BY txn_key",
      );
      rows.setReadBigInts(true);
      for (const row of rows.iterate(mark.seq) as Iterable<{
        seq: bigint;
        txn_key: bigint;
        txn_id: string;
      }>) {
        this.#repoint.run(row.txn_key, row.seq);
        if (Number(row.seq) > mark.seq) mark = { seq: Number(row.seq), txnId: row.txn_id };
      }
      this.#mark = mark;
      this.#writeMark.run(mark.seq, mark.txnId);
      this.#db.exec("COMMIT; BEGIN IMMEDIATE");
      this.#committedAt = performance.now();
      this.#writing = true;
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  /** Indexes `seq` under `key` unless the key is taken; returns the seq that holds it then. */
  claim(key: bigint, seq: number): number | undefined {
    if (this.#claim.run(key, seq).changes === 0) return this.seqOf(key);
    this.#claimed.push([key, seq]);
    return undefined;
  }

  /** Gives a key whose row is gone to `seq`. */
  repoint(key: bigint, seq: number): void {
    this.#repoint.run(key, seq);
    this.#claimed.push([key, seq]);
  }

  /** Forgets the keys of rows deleted from the journal (inside the deleting transaction). */
  forget(rows: ReadonlyArray<{ seq: number; key: bigint }>): void {
    for (const row of rows) this.#remove.run(row.key, row.seq);
    if (rows.some((row) => row.seq === this.#mark.seq)) {
      // The mark must be a row the journal still holds, or the next start rebuilds everything.
      const newest = this.#journal
        .prepare("SELECT seq, txn_id FROM outbox ORDER BY seq DESC LIMIT 1")
        .get() as { seq: number; txn_id: string } | undefined;
      this.#mark = newest ? { seq: newest.seq, txnId: newest.txn_id } : { seq: 0, txnId: "" };
    }
  }

  /**
   * Runs `work`, a journal transaction; `last` tells the last row it inserted, the new mark. If it
   * fails, the keys it claimed are taken back. (Not with a savepoint: that copies every page it
   * touches to a sub-journal first, and costs as much as the index it replaces.) Should that fail
   * too, the keys left point at rows that are not there, which `claim`'s callers treat as gone.
   */
  follow<T>(work: () => T, last: () => { seq: number; txnId: string } | undefined): T {
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
      this.#writeMark.run(this.#mark.seq, this.#mark.txnId);
      this.#db.exec("COMMIT");
      this.#writing = false;
    }
    await this.#checkpointer?.stop();
    this.#db.close();
  }

  #commit(): void {
    try {
      const started = performance.now();
      this.#writeMark.run(this.#mark.seq, this.#mark.txnId);
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

  #inJournal(mark: { seq: number; txnId: string }): boolean {
    if (mark.seq === 0) return true;
    const row = this.#journalTxnId.get(mark.seq) as { txn_id: string } | undefined;
    return row?.txn_id === mark.txnId;
  }
}

const SCHEMA = `CREATE TABLE IF NOT EXISTS txn_keys (txn_key INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS indexed (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, txn_id TEXT NOT NULL);`;

/** Opens the index file; one that SQLite cannot read is deleted and made again (it is a cache). */
function openIndexFile(path: string): DatabaseSync {
  const open = () => {
    const db = new DatabaseSync(path);
    try {
      if (path !== ":memory:") restrictToOwner(path);
      // NORMAL in WAL: a power cut may lose the last commits, never the file; the journal has them.
      db.exec(
        `PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 1000; ${SCHEMA}`,
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
