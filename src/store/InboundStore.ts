/**
 * What the homeserver pushed, journaled before it is acknowledged. One transaction becomes one
 * row per item (a room event, an ephemeral event, a to-device message, device-list changes, OTK
 * counts); the dispatcher runs them through the plugins in `seq` order per lane.
 */
export type InboundKind = "event" | "ephemeral" | "toDevice" | "deviceLists" | "otkCounts";

export interface NewInboundItem {
  readonly kind: InboundKind;
  /** Items of one lane are dispatched in order: `room:<roomId>`, `todevice:<recipient>`, `ephemeral`, `e2ee`. */
  readonly lane: string;
  /** The event id of room events: the cause key of what their handlers send. */
  readonly eventId: string | undefined;
  /** The item as JSON text, exactly as received. */
  readonly json: string;
}

export interface InboundItem extends NewInboundItem {
  readonly seq: number;
  readonly txnId: string;
  readonly attempts: number;
}

export type InboundState = "pending" | "done" | "failed";

/** Every method does I/O. */
export interface InboundStore {
  /**
   * Journals one transaction and its items in one commit and resolves once committed. A
   * transaction already journaled with the same id and body hash is a duplicate: nothing is
   * written. (The same id with another body is a new transaction: Synapse on SQLite can restart
   * its counter.)
   */
  journal(txnId: string, bodyHash: string, items: readonly NewInboundItem[]): Promise<{ duplicate: boolean }>;
  /** Up to `limit` pending items with seq > `afterSeq`, in seq order; empty when none. */
  pending(afterSeq: number, limit: number): Promise<InboundItem[]>;
  /** The handlers of these items finished (or were given up on with a reason). */
  settle(seq: number, state: Exclude<InboundState, "pending">, error?: string): Promise<void>;
  /** Counts one more failed dispatch of an item; returns the new count. */
  recordAttempt(seq: number): Promise<number>;
  /** Counts by state. */
  totals(): Promise<Record<InboundState, number>>;
}
