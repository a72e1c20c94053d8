import type { DatabaseSync, StatementSync } from "node:sqlite";
import type {
  InboundItem,
  InboundRecord,
  InboundRecordBatch,
  InboundState,
  InboundJournal,
  JournalOutcome,
  NewInboundItem,
  PendingRead,
} from "../../inbound/InboundJournal.ts";
import {
  PENDING_COLUMNS,
  RECORD_COLUMNS,
  toItem,
  toRecord,
  type RawItem,
  type RawRecord,
} from "../inboundRows.ts";
import { openOrShare, type SqliteOptions } from "./SqliteDatabase.ts";
import { INBOUND_ITEM_KEYS, KeyIndexFile } from "./KeyIndexFile.ts";

const NOT_PENDING = "seq NOT IN (SELECT seq FROM inbound_pending)";

/**
 * The inbound journal on node:sqlite: what the homeserver pushed, committed before it is
 * answered, one row per item, deduplicated by the item's key, which is indexed in a file of its
 * own (`<store.path>-itemkeys`, a `KeyIndexFile`: event ids are random, and a unique index in the
 * journal wrote a page of it per event; docs/decisions/0018-item-key-index-file.md). An item's row is
 * written once; while it waits to be handled it is also listed in `inbound_pending` with its
 * dispatch count, and handling it deletes that small row (a dead letter also marks the item).
 * One commit per transaction (Synapse keeps one in flight per appservice, so there is nothing to
 * group); the dispatcher's bookkeeping arrives in batches (`record`). Shares the file, and the
 * connection, with `SqliteOutboxStore`: every write here is one synchronous BEGIN…COMMIT, so it
 * never interleaves with the outbox's group commits.
 */
export class SqliteInboundJournal implements InboundJournal {
  readonly #db: DatabaseSync;
  readonly #ownsDb: boolean;
  readonly #lastSeq: StatementSync;
  readonly #keys: KeyIndexFile<string>;
  readonly #exists: StatementSync;
  readonly #insertItem: StatementSync;
  readonly #insertRejected: StatementSync;
  readonly #insertPending: StatementSync;
  readonly #pending: StatementSync;
  readonly #pendingInLane: StatementSync;
  readonly #begin: StatementSync;
  readonly #handled: StatementSync;
  readonly #handledCounted: StatementSync;
  readonly #markDead: StatementSync;
  readonly #list: StatementSync;
  readonly #listDone: StatementSync;
  readonly #listTrouble: StatementSync;
  readonly #totals: StatementSync;

  /** Opens (and migrates) the file, or wraps a database another store already opened. */
  constructor(source: SqliteOptions | DatabaseSync) {
    ({ db: this.#db, owned: this.#ownsDb } = openOrShare(source));
    // AUTOINCREMENT keeps the highest seq ever given here, pruned rows included.
    this.#lastSeq = this.#db.prepare(
      "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'inbound_items'), 0) AS seq",
    );
    this.#keys = new KeyIndexFile(this.#db, INBOUND_ITEM_KEYS);
    this.#exists = this.#db.prepare("SELECT 1 AS found FROM inbound_items WHERE seq = ?");
    this.#insertItem = this.#db.prepare(
      `INSERT INTO inbound_items (seq, item_key, txn_id, kind, lane, event_id, json, received_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#insertRejected = this.#db.prepare(
      `INSERT INTO inbound_items (seq, item_key, txn_id, kind, lane, event_id, json, received_at, state, error, settled_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'rejected', ?, ?)`,
    );
    // One statement for a transaction's items, not one per item: they are the rows just written.
    this.#insertPending = this.#db.prepare(
      `INSERT INTO inbound_pending (seq, attempts)
       SELECT seq, 1 FROM inbound_items WHERE seq > ? AND seq <= ? AND state IS NULL`,
    );
    this.#pending = this.#db.prepare(
      `SELECT ${PENDING_COLUMNS} FROM inbound_pending p JOIN inbound_items i ON i.seq = p.seq
       WHERE p.seq > ? ORDER BY p.seq LIMIT ?`,
    );
    this.#pendingInLane = this.#db.prepare(
      `SELECT ${PENDING_COLUMNS} FROM inbound_pending p JOIN inbound_items i ON i.seq = p.seq
       WHERE p.seq > ? AND p.seq <= ? AND i.lane = ? ORDER BY p.seq LIMIT ?`,
    );
    this.#begin = this.#db.prepare("UPDATE inbound_pending SET attempts = attempts + 1 WHERE seq = ?");
    // A dead letter keeps its dispatch count; RETURNING costs twice the delete, so only it asks.
    this.#handled = this.#db.prepare("DELETE FROM inbound_pending WHERE seq = ?");
    this.#handledCounted = this.#db.prepare("DELETE FROM inbound_pending WHERE seq = ? RETURNING attempts");
    this.#markDead = this.#db.prepare(
      "UPDATE inbound_items SET state = 'dead', error = ?, attempts = ?, settled_at = ? WHERE seq = ?",
    );
    this.#list = this.#db.prepare(
      `SELECT ${RECORD_COLUMNS} FROM inbound_items WHERE ${NOT_PENDING} ORDER BY seq DESC LIMIT ?`,
    );
    this.#listDone = this.#db.prepare(
      `SELECT ${RECORD_COLUMNS} FROM inbound_items WHERE state IS NULL AND ${NOT_PENDING}
       ORDER BY seq DESC LIMIT ?`,
    );
    this.#listTrouble = this.#db.prepare(
      `SELECT ${RECORD_COLUMNS} FROM inbound_items WHERE state = ? ORDER BY seq DESC LIMIT ?`,
    );
    this.#totals = this.#db.prepare(
      `SELECT (SELECT COUNT(*) FROM inbound_pending) AS pending,
         (SELECT COUNT(*) FROM inbound_items WHERE state IS NULL) AS open,
         (SELECT COUNT(*) FROM inbound_items WHERE state = 'dead') AS dead,
         (SELECT COUNT(*) FROM inbound_items WHERE state = 'rejected') AS rejected`,
    );
  }

  /**
   * Journals the items in one commit; resolves after COMMIT with the new ones. Rejects (with
   * nothing written) when the commit fails: the caller must not acknowledge.
   */
  async journal(txnId: string, items: readonly NewInboundItem[]): Promise<JournalOutcome> {
    const now = Date.now();
    const journaled: InboundItem[] = [];
    let rejectedCount = 0;
    let duplicates = 0;
    let last: { seq: number; id: string } | undefined;
    let lastKey: string | undefined;
    this.#keys.beginWriting();
    return this.#transaction(
      () => {
        // Seqs are given here, after the highest ever given (pruned rows included), as
        // AUTOINCREMENT would: the key is claimed in the index before its row is written.
        const afterSeq = (this.#lastSeq.get() as { seq: number }).seq;
        let seq = afterSeq;
        for (const item of items) {
          const taken = this.#keys.claim(item.key, seq + 1);
          if (taken !== undefined) {
            if (this.#exists.get(taken) !== undefined) {
              duplicates++;
              continue;
            }
            this.#keys.repoint(item.key, seq + 1); // its row was pruned
          }
          seq++;
          const { key, kind, lane, eventId, json, rejected } = item;
          lastKey = key;
          if (rejected !== undefined) {
            this.#insertRejected.run(seq, key, txnId, kind, lane, eventId ?? null, json, now, rejected, now);
            rejectedCount++;
            continue;
          }
          this.#insertItem.run(seq, key, txnId, kind, lane, eventId ?? null, json, now);
          journaled.push({ ...item, seq, txnId, attempts: 1 });
        }
        if (lastKey !== undefined) last = { seq, id: lastKey };
        if (journaled.length > 0) this.#insertPending.run(afterSeq, seq);
        return { items: journaled, rejected: rejectedCount, duplicates, afterSeq, upToSeq: seq };
      },
      () => last,
    );
  }

  async pending(afterSeq: number, limit: number): Promise<PendingRead> {
    const items = (this.#pending.all(afterSeq, limit) as unknown as RawItem[]).map(toItem);
    const readUpTo =
      items.length === limit ? items[items.length - 1]!.seq : (this.#lastSeq.get() as { seq: number }).seq;
    return { items, readUpTo };
  }

  async lastSeq(): Promise<number> {
    return (this.#lastSeq.get() as { seq: number }).seq;
  }

  async pendingInLane(
    lane: string,
    afterSeq: number,
    upToSeq: number,
    limit: number,
  ): Promise<InboundItem[]> {
    return (this.#pendingInLane.all(afterSeq, upToSeq, lane, limit) as unknown as RawItem[]).map(toItem);
  }

  /** Counts begun dispatches and records outcomes; an item already settled keeps its first outcome. */
  async record(batch: InboundRecordBatch): Promise<void> {
    if (batch.begun.length === 0 && batch.settled.length === 0) return;
    const now = Date.now();
    this.#transaction(() => {
      for (const seq of batch.begun) this.#begin.run(seq);
      for (const s of batch.settled) {
        if (s.state !== "dead") {
          this.#handled.run(s.seq);
          continue;
        }
        const pending = this.#handledCounted.get(s.seq) as { attempts: number } | undefined;
        if (pending) this.#markDead.run(s.error ?? null, pending.attempts, now, s.seq);
      }
    });
  }

  async list(filter: { state?: Exclude<InboundState, "pending">; limit: number }): Promise<InboundRecord[]> {
    const rows = (filter.state === undefined
      ? this.#list.all(filter.limit)
      : filter.state === "done"
        ? this.#listDone.all(filter.limit)
        : this.#listTrouble.all(filter.state, filter.limit)) as unknown as RawRecord[];
    return rows.map(toRecord);
  }

  async totals(): Promise<Record<InboundState, number>> {
    const t = this.#totals.get() as { pending: number; open: number; dead: number; rejected: number };
    return { pending: t.pending, done: t.open - t.pending, dead: t.dead, rejected: t.rejected };
  }

  /**
   * Deletes items settled (or, when handled, received) before `before` (ms epoch); pending ones
   * stay. Returns how many. An event whose row is pruned is no longer recognised if the
   * homeserver sends it again, so keep `before` well beyond the homeserver's retry horizon
   * (Synapse backs off to ~512 s between tries; the default retention is 7 days).
   */
  async prune(before: number): Promise<number> {
    this.#keys.beginWriting();
    const prune = this.#db.prepare(
      `DELETE FROM inbound_items WHERE COALESCE(settled_at, received_at) < ? AND ${NOT_PENDING}
       RETURNING seq, item_key AS key`,
    );
    return this.#transaction(() => {
      const gone = prune.all(before) as Array<{ seq: number; key: string }>;
      this.#keys.forget(gone);
      return gone.length;
    });
  }

  /** Commits the key index and closes it, and the file when this journal opened it. */
  async close(): Promise<void> {
    await this.#keys.close();
    if (this.#ownsDb) this.#db.close();
  }

  /** One write transaction of the journal, its key claims taken back if it fails. */
  #transaction<T>(work: () => T, last: () => { seq: number; id: string } | undefined = () => undefined): T {
    return this.#keys.follow(() => {
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        const result = work();
        this.#db.exec("COMMIT");
        return result;
      } catch (error) {
        if (this.#db.isOpen && this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw error;
      }
    }, last);
  }
}
