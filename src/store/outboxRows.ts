import type { TxnId } from "../ids.ts";
import type { DeadReason, OutboxKind, OutboxRow, OutboxState, Settlement } from "./OutboxStore.ts";

/** A row of the `outbox` table as a store's query returns it (its lane by name, its error as JSON text). */
export interface RawRow {
  seq: number;
  txn_id: string;
  lane: string;
  kind: string;
  sender: string;
  method: string;
  path: string;
  body: string | null;
  state: string;
  attempts: number;
  event_id: string | null;
  error: string | null;
  created_at: number;
  settled_at: number | null;
}

/** A row as the outbox sees it. */
export function toRow(raw: RawRow): OutboxRow {
  return {
    seq: raw.seq,
    txnId: raw.txn_id as TxnId,
    lane: raw.lane,
    kind: raw.kind as OutboxKind,
    sender: raw.sender,
    request: { method: raw.method as "PUT", path: raw.path, body: raw.body ?? undefined },
    state: raw.state as OutboxState,
    attempts: raw.attempts,
    eventId: raw.event_id ?? undefined,
    error: raw.error ? (JSON.parse(raw.error) as DeadReason) : undefined,
    createdAt: raw.created_at,
    settledAt: raw.settled_at ?? undefined,
  };
}

export function withSettlement(row: OutboxRow, s: Settlement): OutboxRow {
  return s.state === "sent"
    ? { ...row, state: "sent", eventId: s.eventId, attempts: s.attempts }
    : { ...row, state: "dead", error: s.error, attempts: s.attempts };
}
