import type { InboundItem, InboundKind, InboundRecord, InboundState } from "../inbound/InboundJournal.ts";

/** A pending item as a journal's query returns it (`PENDING_COLUMNS`). */
export interface RawItem {
  seq: number;
  txn_id: string;
  kind: string;
  lane: string;
  item_key: string;
  event_id: string | null;
  json: string;
  attempts: number;
}

/** A journaled item with its outcome (`RECORD_COLUMNS`). */
export interface RawRecord extends RawItem {
  state: string | null;
  error: string | null;
  received_at: number;
  settled_at: number | null;
}

/** An item's columns, with the dispatch count of a pending one (`p`: inbound_pending). */
export const PENDING_COLUMNS = "i.seq, i.txn_id, i.kind, i.lane, i.item_key, i.event_id, i.json, p.attempts";
export const RECORD_COLUMNS =
  "seq, txn_id, kind, lane, item_key, event_id, json, attempts, state, error, received_at, settled_at";

export function toItem(raw: RawItem): InboundItem {
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

/** A settled item as the CLI and the dashboard list it; state NULL is a handled item. */
export function toRecord(raw: RawRecord): InboundRecord {
  return {
    seq: raw.seq,
    txnId: raw.txn_id,
    kind: raw.kind as InboundKind,
    lane: raw.lane,
    eventId: raw.event_id ?? undefined,
    state: (raw.state ?? "done") as InboundState,
    attempts: raw.attempts,
    error: raw.error ?? undefined,
    json: raw.json,
    receivedAt: raw.received_at,
    settledAt: raw.settled_at ?? undefined,
  };
}
