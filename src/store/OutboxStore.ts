import type { MatrixRequest } from "../matrix/requests.ts";
import type { TxnId } from "../ids.ts";

/** The endpoint a request goes to; part of its txnId, so one id is never reused across endpoints. */
export type OutboxKind = "send" | "state" | "redact" | "sendToDevice";

/** `dropped`: taken out by an operator (`courier outbox drop`); never sent, never retried. */
export type OutboxState = "pending" | "sent" | "dead" | "dropped";

/** A request as the outbox journals it, before the store gives it a sequence number. */
export interface NewOutboxRow {
  readonly txnId: TxnId;
  /** Requests of one lane leave in `seq` order: `room:<roomId>` or `todevice:<sender>`. */
  readonly lane: string;
  readonly kind: OutboxKind;
  readonly sender: string;
  readonly request: MatrixRequest;
}

export interface OutboxRow extends NewOutboxRow {
  /** Global enqueue order, assigned at commit. */
  readonly seq: number;
  readonly state: OutboxState;
  readonly attempts: number;
  /** Event id for sent room events. */
  readonly eventId: string | undefined;
  /** Why the row was dead-lettered: errcode, status and message. */
  readonly error: DeadReason | undefined;
  readonly createdAt: number;
  readonly settledAt: number | undefined;
}

export interface DeadReason {
  readonly errcode: string;
  readonly status: number;
  readonly reason: string;
}

/** The outcome of inserting one row: new (with its seq), or the row that already had that txnId. */
export type InsertOutcome =
  | { readonly inserted: true; readonly row: OutboxRow }
  | { readonly inserted: false; readonly row: OutboxRow };

/** The final outcome of a row: sent (with the event id for room events) or dead (with why). */
export type Settlement = {
  readonly seq: number;
  readonly txnId: TxnId;
  readonly lane: string;
  readonly attempts: number;
} & (
  | { readonly state: "sent"; readonly eventId: string | undefined }
  | { readonly state: "dead"; readonly error: DeadReason }
);

export interface LaneStats {
  readonly lane: string;
  readonly pending: number;
  readonly oldestCreatedAt: number;
}

export interface OutboxTotals {
  readonly pending: number;
  readonly sent: number;
  readonly dead: number;
}

/**
 * Where the outbox journals requests. Implementation: SQLite (`SqliteOutboxStore`), for one process.
 * Every method does I/O. `insert` resolves only once its rows are committed; implementations
 * group concurrent calls into one transaction. `settle` may be buffered for a while (a row whose
 * outcome is lost in a crash is replayed, and the homeserver dedupes it), but `get`, `loadLane`
 * and the listing methods must see buffered settlements.
 */
export interface OutboxStore {
  /** Journals rows in order; an existing txnId is left as it is and returned. */
  insert(rows: readonly NewOutboxRow[]): Promise<InsertOutcome[]>;
  /** Records final outcomes (sent with event id, or dead with reason); resolves once committed. */
  settle(settlements: readonly Settlement[]): Promise<void>;
  /** Lanes that have pending rows; empty when there are none. */
  pendingLanes(): Promise<string[]>;
  /** Up to `limit` pending rows of a lane with seq > `afterSeq`, in seq order. */
  loadLane(lane: string, afterSeq: number, limit: number): Promise<OutboxRow[]>;
  /** The row with this txnId, or undefined. */
  get(txnId: TxnId): Promise<OutboxRow | undefined>;
  /** Rows by state, newest first (CLI, dashboard). */
  list(filter: { state?: OutboxState; lane?: string; limit: number }): Promise<OutboxRow[]>;
  /** Pending rows per lane. */
  laneStats(): Promise<LaneStats[]>;
  totals(): Promise<OutboxTotals>;
  /** Puts dead rows back to pending (operator retry); returns how many changed. */
  requeue(txnIds: readonly TxnId[] | "all-dead"): Promise<number>;
  /**
   * Marks pending or dead rows dropped (kept as a record, so their txnIds are never sent again);
   * returns how many changed. A row already on its way may still be accepted: it then ends up
   * `sent`, which is the truth. While an outbox runs on the store, drop through `Outbox.drop`, so
   * the rows it holds in memory are not sent either.
   */
  drop(txnIds: readonly TxnId[]): Promise<number>;
  /** Deletes rows settled before `before` (ms epoch); returns how many. */
  prune(before: number): Promise<number>;
  /** Commits anything buffered. */
  flush(): Promise<void>;
}
