import type { Outbox } from "../../outbox/Outbox.ts";
import type { InboundRecord, InboundState, InboundJournal } from "../../inbound/InboundJournal.ts";
import type { OutboxRow, OutboxStore, OutboxTotals } from "../../store/OutboxStore.ts";
import type { PluginStatus } from "./options.ts";
import type { ThroughputSeries } from "./ThroughputMeter.ts";

/** What `GET /admin/api/state` answers: everything the dashboard shows, in one poll. */
export interface AdminState {
  /** When this was read (ms epoch); ages are relative to it. */
  readonly now: number;
  readonly about: Record<string, unknown>;
  /** Rows in the store by state. */
  readonly totals: OutboxTotals;
  /** Counters of this process since it started. */
  readonly counters: {
    readonly sent: number;
    readonly retried: number;
    readonly dead: number;
    readonly rateLimited: number;
    readonly inFlight: number;
  };
  /** Lanes with pending rows: how many, and the deepest `laneLimit` of them. */
  readonly lanes: {
    readonly count: number;
    readonly shown: ReadonlyArray<{
      readonly lane: string;
      readonly pending: number;
      readonly oldestCreatedAt: number;
      readonly oldestAgeMs: number;
    }>;
  };
  /** The newest sent rows, newest first. */
  readonly recent: readonly RowView[];
  /** Dead letters, newest first, with why. */
  readonly dead: readonly RowView[];
  readonly plugins: readonly PluginStatus[];
  readonly throughput: ThroughputSeries;
  /** The inbound journal: items by state, the newest rejected and dead ones. */
  readonly inbound: InboundPanel;
}

/** What `GET /admin/api/inbound` answers (and `inbound` of the state). */
export interface InboundPanel {
  /** Items in the journal by state. */
  readonly totals: Record<InboundState, number>;
  /** Items refused at the journal as malformed (never handled), newest first, with why. */
  readonly rejected: readonly InboundView[];
  /** Items whose handlers were given up, newest first, with why. */
  readonly dead: readonly InboundView[];
}

/** One inbound item as the dashboard shows it (not the item itself: it may hold private content). */
export interface InboundView {
  readonly seq: number;
  readonly txnId: string;
  readonly kind: string;
  readonly lane: string;
  readonly eventId?: string;
  readonly attempts: number;
  /** Absent for items journaled before courier recorded it. */
  readonly receivedAt?: number;
  readonly settledAt?: number;
  /** Why it was rejected or given up, at most `REASON_MAX_CHARS` characters. */
  readonly reason: string;
}

/** A reason longer than this (handler errors are free text) is cut, ending in `…`. */
export const REASON_MAX_CHARS = 1000;

/** One outbox row as the dashboard shows it (no request body: it may hold private content). */
export interface RowView {
  readonly txnId: string;
  readonly lane: string;
  readonly kind: string;
  readonly sender: string;
  readonly attempts: number;
  readonly createdAt: number;
  readonly settledAt: number | undefined;
  readonly eventId?: string;
  readonly errcode?: string;
  readonly status?: number;
  readonly reason?: string;
}

export interface AdminStateSources {
  readonly outbox: Outbox;
  readonly store: Pick<OutboxStore, "list">;
  readonly plugins: () => readonly PluginStatus[];
  readonly about: () => Record<string, unknown>;
  readonly throughput: () => ThroughputSeries;
  readonly inbound: Pick<InboundJournal, "list" | "totals">;
  readonly limits: {
    readonly recent: number;
    readonly dead: number;
    readonly lanes: number;
    /** Rejected items listed, and dead ones. */
    readonly inbound: number;
  };
  readonly now: () => number;
}

/** Reads the dashboard's state from the outbox and its store. Does I/O (store queries). */
export async function readAdminState(sources: AdminStateSources): Promise<AdminState> {
  const [stats, recent, dead, inbound] = await Promise.all([
    sources.outbox.stats(),
    sources.store.list({ state: "sent", limit: sources.limits.recent }),
    sources.store.list({ state: "dead", limit: sources.limits.dead }),
    readInboundPanel(sources.inbound, sources.limits.inbound),
  ]);
  const now = sources.now();
  return {
    now,
    about: sources.about(),
    totals: stats.totals,
    counters: {
      sent: stats.sent,
      retried: stats.retried,
      dead: stats.dead,
      rateLimited: stats.rateLimited,
      inFlight: stats.inFlight,
    },
    lanes: {
      count: stats.lanes.length,
      shown: stats.lanes.slice(0, sources.limits.lanes).map((l) => ({
        lane: l.lane,
        pending: l.pending,
        oldestCreatedAt: l.oldestCreatedAt,
        oldestAgeMs: Math.max(0, now - l.oldestCreatedAt),
      })),
    },
    recent: recent.map(viewOf),
    dead: dead.map(viewOf),
    plugins: sources.plugins(),
    throughput: sources.throughput(),
    inbound,
  };
}

/** Reads the inbound panel: totals, and the newest `limit` rejected and dead items. Does I/O. */
export async function readInboundPanel(
  journal: Pick<InboundJournal, "list" | "totals">,
  limit: number,
): Promise<InboundPanel> {
  const [totals, rejected, dead] = await Promise.all([
    journal.totals(),
    journal.list({ state: "rejected", limit }),
    journal.list({ state: "dead", limit }),
  ]);
  return { totals, rejected: rejected.map(inboundViewOf), dead: dead.map(inboundViewOf) };
}

/** The metadata of an item, without the item; the reason cut to `REASON_MAX_CHARS`. */
export function inboundViewOf(record: InboundRecord): InboundView {
  return {
    seq: record.seq,
    txnId: record.txnId,
    kind: record.kind,
    lane: record.lane,
    ...(record.eventId === undefined ? {} : { eventId: record.eventId }),
    attempts: record.attempts,
    ...(record.receivedAt > 0 ? { receivedAt: record.receivedAt } : {}),
    ...(record.settledAt === undefined ? {} : { settledAt: record.settledAt }),
    reason: clip(record.error ?? "", REASON_MAX_CHARS),
  };
}

/** At most `max` characters, the last one `…` when cut; never half of a surrogate pair. */
function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = /[\uD800-\uDBFF]/.test(text.charAt(max - 2)) ? max - 2 : max - 1;
  return `${text.slice(0, end)}…`;
}

function viewOf(row: OutboxRow): RowView {
  return {
    txnId: row.txnId,
    lane: row.lane,
    kind: row.kind,
    sender: row.sender,
    attempts: row.attempts,
    createdAt: row.createdAt,
    settledAt: row.settledAt,
    ...(row.eventId === undefined ? {} : { eventId: row.eventId }),
    ...(row.error === undefined
      ? {}
      : { errcode: row.error.errcode, status: row.error.status, reason: row.error.reason }),
  };
}
