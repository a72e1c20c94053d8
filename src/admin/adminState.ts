import type { Outbox } from "../outbox/Outbox.ts";
import type { OutboxRow, OutboxStore, OutboxTotals } from "../store/OutboxStore.ts";
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
}

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
  readonly limits: { readonly recent: number; readonly dead: number; readonly lanes: number };
  readonly now: () => number;
}

/** Reads the dashboard's state from the outbox and its store. Does I/O (store queries). */
export async function readAdminState(sources: AdminStateSources): Promise<AdminState> {
  const [stats, recent, dead] = await Promise.all([
    sources.outbox.stats(),
    sources.store.list({ state: "sent", limit: sources.limits.recent }),
    sources.store.list({ state: "dead", limit: sources.limits.dead }),
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
  };
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
