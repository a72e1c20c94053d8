// outbox-memory: 100,000 messages pending (the homeserver paused) cost bounded memory, because
// lanes hold a window of rows and the rest waits on disk; after a restart on that backlog the
// first request leaves quickly. Baseline, same run: a naive in-memory queue of the same requests.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MatrixClient } from "../src/matrix/MatrixClient.ts";
import { Outbox } from "../src/outbox/Outbox.ts";
import { SqliteOutboxStore } from "../src/store/sqlite/SqliteOutboxStore.ts";
import { roomSendRequest } from "../src/matrix/requests.ts";
import { deriveTxnId } from "../src/outbox/deriveTxnId.ts";
import { roomId, userId } from "../src/ids.ts";
import type { OutboxTransport } from "../src/outbox/options.ts";
import { report, round, rssMb, startFakeHomeserver } from "./support.ts";

const MESSAGES = Number(process.env.BENCH_PENDING ?? 100_000);
const ROOMS = 100;
// 100 enqueues in flight at once, like 100 rooms' handlers each sending (BENCH_FILL_BATCH to vary).
const FILL_BATCH = Number(process.env.BENCH_FILL_BATCH ?? 100);
const TOKEN = "bench-as-token";
const content = (n: number) => ({ msgtype: "m.text", body: `pending message number ${n}` });
const room = (n: number) => roomId(`!mem${n % ROOMS}:bench`);
const SELF = fileURLToPath(import.meta.url);

/** Runs one phase in a fresh process, so each RSS figure is that phase's alone. */
function phase(name: string, args: object): Promise<Record<string, number>> {
  const child = spawn(process.execPath, ["--expose-gc", SELF, name, JSON.stringify(args)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk));
  return new Promise((resolve, reject) =>
    child.on("exit", (code) =>
      code === 0
        ? resolve(JSON.parse(out) as Record<string, number>)
        : reject(new Error(`${name} exited ${code}`)),
    ),
  );
}

function settle(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return rssMb();
}

const heapMb = () => Math.round(process.memoryUsage().heapUsed / 2 ** 20);

/** RSS once the process has sat idle long enough for V8's memory reducer to give back the heap it grew during the burst. */
async function steadyRss(): Promise<number> {
  await new Promise((r) => setTimeout(r, 10_000));
  return settle();
}

async function fill({ db, url }: { db: string; url: string }) {
  const store = new SqliteOutboxStore({ path: db });
  const client = new MatrixClient({ homeserverUrl: url, accessToken: TOKEN, timeoutMs: 600_000 });
  const outbox = new Outbox({
    store,
    transport: client,
    appserviceId: "bench",
    botUserId: userId("@bot:bench"),
    rate: { perSecond: 1e9, burst: 1e9 },
  });
  await outbox.start();
  const start = performance.now();
  for (let i = 0; i < MESSAGES; i += FILL_BATCH) {
    const batch = [];
    for (let n = i; n < Math.min(i + FILL_BATCH, MESSAGES); n++) {
      batch.push(
        outbox.enqueue({
          kind: "send",
          roomId: room(n),
          eventType: "m.room.message",
          content: content(n),
          cause: `m${n}`,
          ordinal: 0,
        }),
      );
    }
    await Promise.all(batch);
  }
  const enqueueOpsPerS = (MESSAGES / (performance.now() - start)) * 1000;
  const { totals } = await outbox.stats();
  const rssAfterBurst = settle();
  return {
    rss_mb: await steadyRss(),
    rss_after_burst_mb: rssAfterBurst,
    heap_mb: heapMb(),
    pending: totals.pending,
    enqueue_ops_per_s: Math.round(enqueueOpsPerS),
  };
}

async function restart({ db, url }: { db: string; url: string }) {
  const client = new MatrixClient({ homeserverUrl: url, accessToken: TOKEN });
  let firstSendMs = -1;
  let sent = 0;
  const transport: OutboxTransport = {
    send(request, options) {
      if (firstSendMs < 0) firstSendMs = performance.now(); // ms since this process started
      return client.send(request, options);
    },
  };
  const store = new SqliteOutboxStore({ path: db });
  const outbox = new Outbox({
    store,
    transport,
    appserviceId: "bench",
    botUserId: userId("@bot:bench"),
    maxConcurrency: 64,
    rate: { perSecond: 1e9, burst: 1e9 },
  });
  outbox.on("sent", () => sent++);
  const startedAt = performance.now();
  await outbox.start();
  // Let it send for a while: a bounded sample of the replay, not the whole backlog.
  await new Promise((r) => setTimeout(r, 3000));
  const replayOpsPerS = (sent / (performance.now() - startedAt)) * 1000;
  await outbox.stop(2000);
  await store.close();
  await client.close();
  return {
    first_send_ms: round(firstSendMs),
    first_send_after_start_ms: round(firstSendMs - startedAt),
    replay_ops_per_s: Math.round(replayOpsPerS),
    rss_mb: settle(),
  };
}

/** The naive alternative: every pending request held in memory. */
async function naive() {
  const queue = [];
  for (let n = 0; n < MESSAGES; n++) {
    const txnId = deriveTxnId({
      appserviceId: "bench",
      sender: "@bot:bench",
      kind: "send",
      target: room(n),
      cause: `m${n}`,
      ordinal: 0,
    });
    queue.push({
      txnId,
      ...roomSendRequest({
        roomId: room(n),
        eventType: "m.room.message",
        txnId,
        content: content(n),
        as: { userId: userId("@bot:bench") },
      }),
    });
  }
  return { rss_mb: await steadyRss(), heap_mb: heapMb(), held: queue.length };
}

const [mode, rawArgs] = process.argv.slice(2);
if (mode) {
  const args = JSON.parse(rawArgs ?? "{}");
  const result =
    mode === "fill" ? await fill(args) : mode === "restart" ? await restart(args) : await naive();
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), "courier-bench-mem-"));
const db = join(dir, "outbox.sqlite");
const hs = await startFakeHomeserver(TOKEN);
await hs.control("pause", {});
const baseline = await phase("naive", {});
const filled = await phase("fill", { db, url: hs.url });
await hs.control("resume", {});
const restarted = await phase("restart", { db, url: hs.url });
await hs.stop();
rmSync(dir, { recursive: true, force: true });
report({
  name: "outbox-memory",
  ops_per_s: filled.enqueue_ops_per_s!,
  p50_ms: NaN,
  p99_ms: NaN,
  rss_mb: filled.rss_mb!,
  rss_after_burst_mb: filled.rss_after_burst_mb,
  heap_mb: filled.heap_mb,
  baseline: { name: "in-memory-array-of-requests", rss_mb: baseline.rss_mb, heap_mb: baseline.heap_mb },
  pending: filled.pending,
  restart_first_send_ms: restarted.first_send_ms,
  restart_first_send_after_start_ms: restarted.first_send_after_start_ms,
  restart_replay_ops_per_s: restarted.replay_ops_per_s,
  restart_rss_mb: restarted.rss_mb,
});
