// `courier outbox …`: look at and act on the journal. Reads go to the file, also while the
// service runs (SQLite WAL readers). Changes have one writer: while the service runs (it holds
// the store's writer lock), they go through its admin API; while it is down, this process takes
// the lock for the command, so a service starting meanwhile waits or refuses.
import { loadConfig } from "../config/loadConfig.ts";
import type { CourierConfig } from "../config/schema.ts";
import { SqliteOutboxStore } from "../store/sqlite/SqliteOutboxStore.ts";
import { WriterLock } from "../store/sqlite/WriterLock.ts";
import type { OutboxRow, OutboxState } from "../store/OutboxStore.ts";
import type { ProgressObserver } from "../outbox/progress.ts";
import type { TxnId } from "../ids.ts";
import { ServiceApi } from "./ServiceApi.ts";

const say = (line: string) => process.stdout.write(`${line}\n`);

const openStore = (config: CourierConfig) =>
  new SqliteOutboxStore({ path: config.store.path, synchronous: config.store.synchronous });

async function withStore<T>(configPath: string, work: (store: SqliteOutboxStore) => Promise<T>): Promise<T> {
  const store = openStore(loadConfig(configPath));
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

/**
 * Runs a change as the store's only writer: `direct` under the writer lock when no service holds
 * it, `viaService` through the running service's admin API otherwise. Both get a store to read.
 */
async function asWriter<T>(
  configPath: string,
  direct: (store: SqliteOutboxStore) => Promise<T>,
  viaService: (api: ServiceApi, store: SqliteOutboxStore) => Promise<T>,
): Promise<T> {
  const config = loadConfig(configPath);
  const lock = config.store.path === ":memory:" ? undefined : WriterLock.tryTake(config.store.path);
  const store = openStore(config);
  try {
    if (lock || config.store.path === ":memory:") return await direct(store);
    return await viaService(ServiceApi.of(config, configPath), store);
  } finally {
    await store.close();
    lock?.release();
  }
}

const age = (since: number) => {
  const s = Math.max(0, Math.round((Date.now() - since) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
};

/** Names the columns of describeRow (tab-separated like the rows, so `cut -f` works on both). */
const ROW_HEADER = ["txnId", "state", "lane", "sender", "kind", "age", "event id / error"].join("\t");

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
    if (filter.json) return rows.forEach((row) => say(JSON.stringify(row)));
    if (rows.length === 0) return say("(nothing)");
    say(ROW_HEADER);
    for (const row of rows) say(describeRow(row));
  });
}

/**
 * Puts dead letters back in their lanes: through the running service, which sends them at once,
 * or in the file while it is down. With `waitMs`, follows them (progress) until none is pending or
 * the time is up.
 */
export async function outboxRetry(
  configPath: string,
  target: {
    txnId?: string;
    allDead: boolean;
    waitMs?: number;
    progress?: (task: string) => ProgressObserver;
  },
): Promise<number> {
  // Dropped rows are not dead: --all-dead leaves them alone.
  const deadOnes = async (store: SqliteOutboxStore) =>
    target.allDead
      ? (await store.list({ state: "dead", limit: Number.MAX_SAFE_INTEGER })).map((row) => row.txnId)
      : [target.txnId as TxnId];
  const retried = async (store: SqliteOutboxStore, ids: readonly TxnId[], changed: number) => {
    say(`${changed} request${changed === 1 ? "" : "s"} put back to pending`);
    if (target.waitMs !== undefined && changed > 0) {
      const left = await follow(store, ids, target.waitMs, target.progress?.("bulk retry"));
      say(left === 0 ? "all of them settled" : `${left} still pending after the wait`);
    }
    return changed;
  };
  return asWriter(
    configPath,
    async (store) => {
      const ids = await deadOnes(store);
      return retried(store, ids, await store.requeue(ids));
    },
    async (api, store) => {
      const ids = await deadOnes(store);
      const changed = target.allDead ? await api.retryAllDead() : await api.retry(target.txnId as TxnId);
      return retried(store, ids, changed);
    },
  );
}

/** Polls the journal until none of `ids` is pending or `waitMs` passed; returns how many are left. */
async function follow(
  store: SqliteOutboxStore,
  ids: readonly TxnId[],
  waitMs: number,
  observer: ProgressObserver | undefined,
): Promise<number> {
  const pending = async () => {
    let n = 0;
    for (const id of ids) if ((await store.get(id))?.state === "pending") n++;
    return n;
  };
  const total = await pending();
  observer?.start(total);
  const deadline = Date.now() + waitMs;
  let left = total;
  while (left > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    left = await pending();
    observer?.update(total - left);
  }
  observer?.stop();
  return left;
}

/**
 * Takes requests out of the queue for good (state `dropped`, kept as a record). Shows them first
 * and asks, unless `yes`; without a terminal to ask on, refuses. Returns how many were dropped.
 * While the service runs, it drops them (admin API), so a row it holds is not sent unless it was
 * already on its way.
 */
export async function outboxDrop(
  configPath: string,
  txnIds: readonly string[],
  options: { yes: boolean; confirm: (question: string) => Promise<boolean> },
): Promise<number> {
  const ask = async (store: SqliteOutboxStore, drop: (ids: TxnId[]) => Promise<number>) => {
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
    const dropped = await drop(rows.map((row) => row.txnId));
    say(`${dropped} request${dropped === 1 ? "" : "s"} dropped`);
    return dropped;
  };
  return asWriter(
    configPath,
    (store) => ask(store, (ids) => store.drop(ids)),
    (api, store) => ask(store, (ids) => api.drop(ids)),
  );
}
