import type { DatabaseSync, StatementSync } from "node:sqlite";
import type {
  InboundItem,
  InboundKind,
  InboundState,
  InboundStore,
  NewInboundItem,
} from "../InboundStore.ts";
import { openOrShare, type SqliteOptions } from "./SqliteDatabase.ts";

interface RawItem {
  seq: number;
  txn_id: string;
  kind: string;
  lane: string;
  event_id: string | null;
  json: string;
  attempts: number;
}

/** What `prune` deleted. */
export interface InboundPruneResult {
  readonly transactions: number;
  readonly items: number;
}

/**
 * The inbound journal on node:sqlite: what the homeserver pushed, committed before it is
 * answered. One commit per transaction (a transaction holds at most ~100 events, and Synapse
 * keeps one in flight per appservice, so there is nothing to group). Shares the file, and the
 * connection, with `SqliteOutboxStore`: every write here is one synchronous BEGIN…COMMIT, so it
 * never interleaves with the outbox's group commits.
 */
export class SqliteInboundJournal implements InboundStore {
  readonly #db: DatabaseSync;
  readonly #ownsDb: boolean;
  readonly #insertTxn: StatementSync;
  readonly #insertItem: StatementSync;
  readonly #pending: StatementSync;
  readonly #settle: StatementSync;
  readonly #recordAttempt: StatementSync;
  readonly #totals: StatementSync;

  /** Opens (and migrates) the file, or wraps a database another store already opened. */
  constructor(source: SqliteOptions | DatabaseSync) {
    ({ db: this.#db, owned: this.#ownsDb } = openOrShare(source));
    this.#insertTxn = this.#db.prepare(
      `INSERT INTO inbound_txns (txn_id, body_hash, received_at) VALUES (?, ?, ?)
       ON CONFLICT (txn_id, body_hash) DO NOTHING RETURNING txn_id`,
    );
    this.#insertItem = this.#db.prepare(
      "INSERT INTO inbound_items (txn_id, kind, lane, event_id, json) VALUES (?, ?, ?, ?, ?)",
    );
    this.#pending = this.#db.prepare(
      `SELECT seq, txn_id, kind, lane, event_id, json, attempts FROM inbound_items
       WHERE state = 'pending' AND seq > ? ORDER BY seq LIMIT ?`,
    );
    this.#settle = this.#db.prepare(
      "UPDATE inbound_items SET state = ?, error = ?, settled_at = ? WHERE seq = ? AND state = 'pending'",
    );
    this.#recordAttempt = this.#db.prepare(
      "UPDATE inbound_items SET attempts = attempts + 1 WHERE seq = ? RETURNING attempts",
    );
    this.#totals = this.#db.prepare("SELECT state, COUNT(*) AS n FROM inbound_items GROUP BY state");
  }

  /**
   * Journals the transaction row and its items in one commit; resolves after COMMIT. Rejects
   * (with nothing written) when the commit fails: the caller must not acknowledge.
   */
  async journal(
    txnId: string,
    bodyHash: string,
    items: readonly NewInboundItem[],
  ): Promise<{ duplicate: boolean }> {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      if (this.#insertTxn.get(txnId, bodyHash, Date.now()) === undefined) {
        this.#db.exec("ROLLBACK");
        return { duplicate: true };
      }
      for (const item of items) {
        this.#insertItem.run(txnId, item.kind, item.lane, item.eventId ?? null, item.json);
      }
      this.#db.exec("COMMIT");
      return { duplicate: false };
    } catch (error) {
      if (this.#db.isOpen && this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  async pending(afterSeq: number, limit: number): Promise<InboundItem[]> {
    return (this.#pending.all(afterSeq, limit) as unknown as RawItem[]).map(toItem);
  }

  /** Records the outcome of a pending item; an item already settled keeps its first outcome. */
  async settle(seq: number, state: Exclude<InboundState, "pending">, error?: string): Promise<void> {
    this.#settle.run(state, error ?? null, Date.now(), seq);
  }

  async recordAttempt(seq: number): Promise<number> {
    const row = this.#recordAttempt.get(seq) as { attempts: number } | undefined;
    if (!row) throw new Error(`inbound item ${seq} is not in the journal`);
    return row.attempts;
  }

  async totals(): Promise<Record<InboundState, number>> {
    const rows = this.#totals.all() as Array<{ state: string; n: number }>;
    const count = (state: InboundState) => rows.find((r) => r.state === state)?.n ?? 0;
    return { pending: count("pending"), done: count("done"), failed: count("failed") };
  }

  /**
   * Deletes settled items (done or failed) settled before `before` (ms epoch), and the
   * transaction rows received before it that have no pending item left. A transaction whose row
   * is pruned is no longer recognised as a duplicate, so keep `before` well beyond the
   * homeserver's retry horizon (Synapse backs off to ~512 s; a day or more is safe).
   */
  async prune(before: number): Promise<InboundPruneResult> {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const items = this.#db
        .prepare("DELETE FROM inbound_items WHERE state != 'pending' AND settled_at < ?")
        .run(before).changes;
      const transactions = this.#db
        .prepare(
          `DELETE FROM inbound_txns WHERE received_at < ?
           AND txn_id NOT IN (SELECT txn_id FROM inbound_items WHERE state = 'pending')`,
        )
        .run(before).changes;
      this.#db.exec("COMMIT");
      return { transactions: Number(transactions), items: Number(items) };
    } catch (error) {
      if (this.#db.isOpen && this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
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
    eventId: raw.event_id ?? undefined,
    json: raw.json,
    attempts: raw.attempts,
  };
}
