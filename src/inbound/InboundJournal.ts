/**
 * The inbound journal (the outbox has a store, `OutboxStore`: "journal" names this one only).
 * What the homeserver pushed, journaled before it is acknowledged. One transaction becomes one
 * row per item (a room event, an ephemeral event, a to-device message, device-list changes, OTK
 * counts); the dispatcher runs them through the plugins in `seq` order per lane.
 */
export type InboundKind = "event" | "ephemeral" | "toDevice" | "deviceLists" | "otkCounts";

export interface NewInboundItem {
  readonly kind: InboundKind;
  /** Items of one lane are dispatched in order: `room:<roomId>`, `todevice:<recipient>`, `ephemeral`, `e2ee`. */
  readonly lane: string;
  /**
   * What makes this item the same item in another transaction: `event:<event_id>` for room
   * events, a fingerprint within the transaction for items without an id. The journal keeps an
   * item once per key.
   */
  readonly key: string;
  /** The event id of room events: the cause key of what their handlers send. */
  readonly eventId: string | undefined;
  /** The item as JSON text, as received. */
  readonly json: string;
  /** The item as parsed, for the dispatcher to skip parsing `json` again. Not stored. */
  readonly payload?: unknown;
  /** Why the item is refused at the journal: kept as a rejected row, never dispatched. */
  readonly rejected?: string;
}

export interface InboundItem extends NewInboundItem {
  readonly seq: number;
  readonly txnId: string;
  /**
   * Dispatches begun, durably counted before the handlers run: the first when the item is
   * journaled, each later one (after a crash, or a failure) when it begins.
   */
  readonly attempts: number;
}

/**
 * `rejected`: refused at the journal (malformed), never dispatched. `dead`: dispatched and given
 * up (a handler failed every try, or the item's dispatch budget ran out).
 */
export type InboundState = "pending" | "done" | "dead" | "rejected";

/** A settled item, as the CLI and the dashboard list it. */
export interface InboundRecord {
  readonly seq: number;
  readonly txnId: string;
  readonly kind: InboundKind;
  readonly lane: string;
  readonly eventId: string | undefined;
  readonly state: InboundState;
  readonly attempts: number;
  readonly error: string | undefined;
  readonly json: string;
  readonly receivedAt: number;
  readonly settledAt: number | undefined;
}

/** What one transaction added to the journal. */
export interface JournalOutcome {
  /** The new items to dispatch (rejected and already-journaled items left out), in seq order. */
  readonly items: readonly InboundItem[];
  /** Items rejected at the journal, with their reasons. */
  readonly rejected: number;
  /** Items the journal already held (a retried transaction). */
  readonly duplicates: number;
  /**
   * The journal's last seq before this commit, and after it: an item dispatcher that has read
   * everything up to `afterSeq` can take `items` without reading them back.
   */
  readonly afterSeq: number;
  readonly upToSeq: number;
}

export interface PendingRead {
  readonly items: InboundItem[];
  readonly readUpTo: number;
}

/** The final outcome of a dispatched item. */
export interface InboundSettlement {
  readonly seq: number;
  readonly state: "done" | "dead";
  readonly error?: string;
}

/** One group commit of the dispatcher's bookkeeping. */
export interface InboundRecordBatch {
  /** Items whose dispatch begins: each counts one attempt. */
  readonly begun: readonly number[];
  readonly settled: readonly InboundSettlement[];
}

/** Every method does I/O. */
export interface InboundJournal {
  /**
   * Journals one transaction's items in one commit and resolves once committed. An item whose
   * key the journal holds already is skipped: a retried transaction (Synapse re-serialises it,
   * so its bytes differ) adds nothing, and a reused transaction id with new items adds those.
   * Each new item's first dispatch is counted here (`attempts` 1): the items are dispatched next,
   * and counting them in this commit saves one per dispatch.
   */
  journal(txnId: string, items: readonly NewInboundItem[]): Promise<JournalOutcome>;
  /**
   * Up to `limit` pending items with seq > `afterSeq`, in seq order, and the seq up to which the
   * journal was read: the last item's, or the journal's last seq when fewer than `limit` were left.
   */
  pending(afterSeq: number, limit: number): Promise<PendingRead>;
  /** The highest seq journaled so far (0 for an empty journal). */
  lastSeq(): Promise<number>;
  /** Up to `limit` pending items of one lane with `afterSeq` < seq ≤ `upToSeq`, in seq order. */
  pendingInLane(lane: string, afterSeq: number, upToSeq: number, limit: number): Promise<InboundItem[]>;
  /** Counts begun dispatches and records outcomes, in one commit. */
  record(batch: InboundRecordBatch): Promise<void>;
  /** Settled items, newest first (CLI, dashboard). */
  list(filter: { state?: Exclude<InboundState, "pending">; limit: number }): Promise<InboundRecord[]>;
  /** Counts by state. */
  totals(): Promise<Record<InboundState, number>>;
  /**
   * Deletes items settled before `before` (ms epoch), pending ones stay; returns how many. A
   * pruned event is no longer recognised if the homeserver sends it again.
   */
  prune(before: number): Promise<number>;
}
