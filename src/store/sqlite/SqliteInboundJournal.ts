import type { DatabaseSync, StatementSync } from "node:sqlite";
import type {
  InboundItem,
  InboundKind,
  InboundRecord,
  InboundRecordBatch,
  InboundState,
  InboundStore,
  JournalOutcome,
  NewInboundItem,
  PendingRead,
} from "../InboundStore.ts";
import { openOrShare, type SqliteOptions } from "./SqliteDatabase.ts";

interface RawItem {
  seq: number;
  txn_id: string;
  kind: string;
  lane: string;
  item_key: string;
  event_id: string | null;
  json: string;
  attempts: number;
}

interface RawRecord extends RawItem {
  state: string;
  error: string | null;
  received_at: number;
  settled_at: number | null;
}

const ITEM_COLUMNS = "seq, txn_id, kind, lane, item_key, event_id, json, attempts";

/**
 * The inbound journal on node:sqlite: what the homeserver pushed, committed before it is
 * answered, one row per item, deduplicated by the item's key (a unique index). One commit per
 * transaction (Synapse keeps one in flight per appservice, so there is nothing to group); the
 * dispatcher's bookkeeping arrives in batches (`record`). Shares the file, and the connection,
 * with `SqliteOutboxStore`: every write here is one synchronous BEGIN…COMMIT, so it never
 * interleaves with the outbox's group commits.
 */
export class SqliteInboundJournal implements InboundStore {
  readonly #db: DatabaseSync;
  readonly #ownsDb: boolean;
  readonly #lastSeq: StatementSync;
  readonly #insertPending: StatementSync;
  readonly #insertRejected: StatementSync;
  readonly #pending: StatementSync;
  readonly #pendingInLane: StatementSync;
  readonly #begin: StatementSync;
  readonly #settle: StatementSync;
  readonly #list: StatementSync;
  readonly #listByState: StatementSync;
  readonly #totals: StatementSync;

  /** Opens (and migrates) the file, or wraps a database another store already opened. */
  constructor(source: SqliteOptions | DatabaseSync) {
    ({ db: this.#db, owned: this.#ownsDb } = openOrShare(source));
    // AUTOINCREMENT keeps the highest seq ever given here, pruned rows included.
    this.#lastSeq = this.#db.prepare(
      "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'inbound_items'), 0) AS seq",
    );
    const insert = (state: string) =>
      this.#db.prepare(
        `INSERT INTO inbound_items (item_key, txn_id, kind, lane, event_id, json, received_at, state, error, settled_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, '${state}', ?, ?) ON CONFLICT (item_key) DO NOTHING RETURNING seq`,
      );
    this.#insertPending = insert("pending");
    this.#insertRejected = insert("rejected");
    this.#pending = this.#db.prepare(
      `SELECT ${ITEM_COLUMNS} FROM inbound_items WHERE state = 'pending' AND seq > ? ORDER BY seq LIMIT ?`,
    );
    this.#pendingInLane = this.#db.prepare(
      `SELECT ${ITEM_COLUMNS} FROM inbound_items
       WHERE state = 'pending' AND seq > ? AND seq <= ? AND lane = ? ORDER BY seq LIMIT ?`,
    );
    this.#begin = this.#db.prepare(
      "UPDATE inbound_items SET attempts = attempts + 1 WHERE seq = ? AND state = 'pending'",
    );
    this.#settle = this.#db.prepare(
      "UPDATE inbound_items SET state = ?, error = ?, settled_at = ? WHERE seq = ? AND state = 'pending'",
    );
    const recordColumns = `${ITEM_COLUMNS}, state, error, received_at, settled_at`;
    this.#list = this.#db.prepare(
      `SELECT ${recordColumns} FROM inbound_items WHERE state != 'pending' ORDER BY seq DESC LIMIT ?`,
    );
    this.#listByState = this.#db.prepare(
      `SELECT ${recordColumns} FROM inbound_items WHERE state = ? ORDER BY seq DESC LIMIT ?`,
    );
    this.#totals = this.#db.prepare("SELECT state, COUNT(*) AS n FROM inbound_items GROUP BY state");
  }

  /**
   * Journals the items in one commit; resolves after COMMIT with the new ones. Rejects (with
   * nothing written) when the commit fails: the caller must not acknowledge.
   */
  async journal(txnId: string, items: readonly NewInboundItem[]): Promise<JournalOutcome> {
    const now = Date.now();
    const journaled: InboundItem[] = [];
    let rejected = 0;
    let duplicates = 0;
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const afterSeq = (this.#lastSeq.get() as { seq: number }).seq;
      let upToSeq = afterSeq;
      for (const item of items) {
        const eventId = item.eventId ?? null;
        const row = (
          item.rejected === undefined
            ? this.#insertPending.get(
                item.key,
                txnId,
                item.kind,
                item.lane,
                eventId,
                item.json,
                now,
                null,
                null,
              )
            : this.#insertRejected.get(
                item.key,
                txnId,
                item.kind,
                item.lane,
                eventId,
                item.json,
                now,
                item.rejected,
                now,
              )
        ) as { seq: number } | undefined;
        if (row === undefined) {
          duplicates++;
          continue;
        }
        upToSeq = row.seq;
        if (item.rejected !== undefined) rejected++;
        else journaled.push({ ...item, seq: row.seq, txnId, attempts: 0 });
      }
      this.#db.exec("COMMIT");
      return { items: journaled, rejected, duplicates, afterSeq, upToSeq };
    } catch (error) {
      if (this.#db.isOpen && this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  async pending(afterSeq: number, limit: number): Promise<PendingRead> {
    const items = (this.#pending.all(afterSeq, limit) as unknown as RawItem[]).map(toItem);
    const readUpTo =
      items.length === limit ? items[items.length - 1]!.seq : (this.#lastSeq.get() as { seq: number }).seq;
    return { items, readUpTo };
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
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      for (const seq of batch.begun) this.#begin.run(seq);
      for (const s of batch.settled) this.#settle.run(s.state, s.error ?? null, now, s.seq);
      this.#db.exec("COMMIT");
    } catch (error) {
      if (this.#db.isOpen && this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  async list(filter: { state?: Exclude<InboundState, "pending">; limit: number }): Promise<InboundRecord[]> {
    const rows = (filter.state === undefined
      ? this.#list.all(filter.limit)
      : this.#listByState.all(filter.state, filter.limit)) as unknown as RawRecord[];
    return rows.map((raw) => ({
      seq: raw.seq,
      txnId: raw.txn_id,
      kind: raw.kind as InboundKind,
      lane: raw.lane,
      eventId: raw.event_id ?? undefined,
      state: raw.state as InboundState,
      attempts: raw.attempts,
      error: raw.error ?? undefined,
      json: raw.json,
      receivedAt: raw.received_at,
      settledAt: raw.settled_at ?? undefined,
    }));
  }

  async totals(): Promise<Record<InboundState, number>> {
    const rows = this.#totals.all() as Array<{ state: string; n: number }>;
    const count = (state: InboundState) => rows.find((r) => r.state === state)?.n ?? 0;
    return {
      pending: count("pending"),
      done: count("done"),
      dead: count("dead"),
      rejected: count("rejected"),
    };
  }

  /**
   * Deletes settled items (done, dead or rejected) settled before `before` (ms epoch); returns
   * how many. An event whose row is pruned is no longer recognised if the homeserver sends it
   * again, so keep `before` well beyond the homeserver's retry horizon (Synapse backs off to
   * ~512 s between tries; the default retention is 7 days).
   */
  async prune(before: number): Promise<number> {
    const deleted = this.#db
      .prepare("DELETE FROM inbound_items WHERE state != 'pending' AND settled_at < ?")
      .run(before).changes;
    return Number(deleted);
  }

  /** Closes the file when this journal opened it; a shared database is left to its owner. */
  async close(): Promise<void> {
    if (this.#ownsDb) this.#db.close();
  }
}

function toItem(raw: RawItem): InboundItem {
  return {
    seq: raw.seq,
    txnId: raw.txn_id,
    kind: raw.kind as InboundKind,
    lane: raw.lane,
    key: raw.item_key,
    eventId: raw.event_id ?? undefined,
    json: raw.json,
    attempts: raw.attempts,
  };
}
