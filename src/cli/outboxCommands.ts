// `courier outbox …`: look at and act on the journal, also while the service runs (SQLite WAL
// lets this process read and write beside it).
import { loadConfig } from "../config/loadConfig.ts";
import { SqliteOutboxStore } from "../store/sqlite/SqliteOutboxStore.ts";
import type { OutboxRow, OutboxState } from "../store/OutboxStore.ts";
import type { TxnId } from "../ids.ts";

const say = (line: string) => process.stdout.write(`${line}\n`);

async function withStore<T>(configPath: string, work: (store: SqliteOutboxStore) => Promise<T>): Promise<T> {
  const config = loadConfig(configPath);
  const store = new SqliteOutboxStore({ path: config.store.path, synchronous: config.store.synchronous });
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

const age = (since: number) => {
  const s = Math.max(0, Math.round((Date.now() - since) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
};

function describeRow(row: OutboxRow): string {
  const outcome =
    row.state === "sent"
      ? (row.eventId ?? "")
      : row.state === "dead"
        ? `${row.error?.errcode} ${row.error?.reason ?? ""}`
        : "";
  return [row.txnId, row.state, row.lane, row.sender, `${row.kind}`, age(row.createdAt), outcome].join("\t");
}

export async function outboxStats(configPath: string, json: boolean): Promise<void> {
  await withStore(configPath, async (store) => {
    const [totals, lanes] = await Promise.all([store.totals(), store.laneStats()]);
    if (json) return say(JSON.stringify({ totals, lanes }));
    say(`pending ${totals.pending}\tsent ${totals.sent}\tdead ${totals.dead}`);
    for (const lane of lanes)
      say(`  ${lane.lane}\t${lane.pending} pending\toldest ${age(lane.oldestCreatedAt)}`);
  });
}

export async function outboxList(
  configPath: string,
  filter: { room?: string; state?: OutboxState; limit: number; json: boolean },
): Promise<void> {
  await withStore(configPath, async (store) => {
    const rows = await store.list({
      limit: filter.limit,
      ...(filter.state ? { state: filter.state } : {}),
      ...(filter.room ? { lane: `room:${filter.room}` } : {}),
    });
    for (const row of rows) say(filter.json ? JSON.stringify(row) : describeRow(row));
    if (!filter.json && rows.length === 0) say("(nothing)");
  });
}

/** Puts dead letters back in their lanes; the running service picks them up within its rescan interval. */
export async function outboxRetry(
  configPath: string,
  target: { txnId?: string; allDead: boolean },
): Promise<number> {
  return withStore(configPath, async (store) => {
    const changed = await store.requeue(target.allDead ? "all-dead" : [target.txnId as TxnId]);
    say(`${changed} request${changed === 1 ? "" : "s"} put back to pending`);
    return changed;
  });
}

/**
 * Takes requests out of the queue for good (state `dropped`, kept as a record). Shows them first
 * and asks, unless `yes`; without a terminal to ask on, refuses. Returns how many were dropped.
 * A running service re-reads a held row before sending it, so a dropped row is not sent unless it
 * was already on its way.
 */
export async function outboxDrop(
  configPath: string,
  txnIds: readonly string[],
  options: { yes: boolean; confirm: (question: string) => Promise<boolean> },
): Promise<number> {
  return withStore(configPath, async (store) => {
    const rows = (await Promise.all(txnIds.map((id) => store.get(id as TxnId)))).filter(
      (row): row is OutboxRow => row !== undefined && (row.state === "pending" || row.state === "dead"),
    );
    if (rows.length === 0) {
      say("nothing to drop: no pending or dead request with that txnId");
      return 0;
    }
    for (const row of rows) say(describeRow(row));
    const n = `${rows.length} request${rows.length === 1 ? "" : "s"}`;
    if (!options.yes && !(await options.confirm(`Drop ${n}? They will never be sent. [y/N] `))) {
      say("nothing dropped");
      return 0;
    }
    const dropped = await store.drop(rows.map((row) => row.txnId));
    say(`${dropped} request${dropped === 1 ? "" : "s"} dropped`);
    return dropped;
  });
}
