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
