// outbox-memory: 100,000 messages pending (the homeserver paused) cost bounded memory, because
// lanes hold a window of rows and the rest waits on disk; after a restart on that backlog the
// first request leaves quickly, and the whole backlog is replayed. Baseline, same run: a naive
// in-memory queue of the same requests.
//
// outbox-scaling (#18): the same fill and replay with 1,000, 10,000 and 100,000 pending
// (BENCH_SCALING), each in processes of their own: CPU per message of the fill (enqueue while the
// homeserver is paused) and of the replay after the restart (until every message was sent), and
// the RSS sampled every 50 ms during the replay. Each size's ratio to the smallest says whether
// the cost stays flat as the backlog grows.
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
import { boundServiceHeap } from "../src/runtime/serviceHeap.ts";
import { report, round, rssMb, startFakeHomeserver } from "./support.ts";

const MESSAGES = Number(process.env.BENCH_PENDING ?? 100_000);
const SCALING = (process.env.BENCH_SCALING ?? "1000,10000").split(",").filter(Boolean).map(Number);
/** The replay stops after this long, whatever is left. */
const MAX_SECONDS = Number(process.env.BENCH_MAX_SECONDS ?? 120);
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

const cpuUs = (since: NodeJS.CpuUsage) => {
  const { user, system } = process.cpuUsage(since);
  return user + system;
};

/**
 * Runs WARMUP messages through a throwaway outbox first, so that a small backlog's cost per
 * message is not mostly the JIT's. With the homeserver paused (`send: false`) they stay pending.
 */
async function warmUp(url: string, send: boolean): Promise<void> {
  const WARMUP = 2_000;
  const dir = mkdtempSync(join(tmpdir(), "courier-bench-warm-"));
  const store = new SqliteOutboxStore({ path: join(dir, "outbox.sqlite") });
  const client = new MatrixClient({ homeserverUrl: url, accessToken: TOKEN, timeoutMs: 600_000 });
  const outbox = new Outbox({
    store,
    transport: client,
    appserviceId: "bench",
    botUserId: userId("@bot:bench"),
    rate: { perSecond: 1e9, burst: 1e9 },
  });
  await outbox.start();
  const batch = [];
  for (let n = 0; n < WARMUP; n++) {
    const target = roomId(`!warm${n % ROOMS}:bench`);
    batch.push(
      outbox.enqueue({
        kind: "send",
        roomId: target,
        eventType: "m.room.message",
        content: content(n),
        cause: `w${n}`,
        ordinal: 0,
      }),
    );
  }
  await Promise.all(batch);
  if (send) await outbox.onIdle();
  await outbox.stop(send ? 2000 : 50);
  await store.close();
  await client.close();
  rmSync(dir, { recursive: true, force: true });
}

async function fill({ db, url, messages = MESSAGES }: { db: string; url: string; messages?: number }) {
  await warmUp(url, false);
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
  const cpu = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < messages; i += FILL_BATCH) {
    const batch = [];
    for (let n = i; n < Math.min(i + FILL_BATCH, messages); n++) {
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
  const enqueueOpsPerS = (messages / (performance.now() - start)) * 1000;
  const cpuUsPerMsg = cpuUs(cpu) / messages;
  const { totals } = await outbox.stats();
  const rssAfterBurst = settle();
  return {
    rss_mb: await steadyRss(),
    rss_after_burst_mb: rssAfterBurst,
    heap_mb: heapMb(),
    pending: totals.pending,
    enqueue_ops_per_s: Math.round(enqueueOpsPerS),
    cpu_us_per_msg: round(cpuUsPerMsg, 1),
  };
}

async function restart({ db, url, warm = false }: { db: string; url: string; warm?: boolean }) {
  // The 100,000 run restarts cold, as a service does (its first-send figures count from the
  // process's creation); the smaller backlogs warm up first, or their cost would be the JIT's.
  if (warm) await warmUp(url, true);
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
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMb())), 50);
  const cpu = process.cpuUsage();
  const startedAt = performance.now();
  await outbox.start();
  const { totals } = await outbox.stats();
  const pending = totals.pending;
  // The whole backlog, bounded in time.
  const deadline = startedAt + MAX_SECONDS * 1000;
  while (sent < pending && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const elapsed = performance.now() - startedAt;
  const cpuUsPerMsg = cpuUs(cpu) / Math.max(1, sent);
  clearInterval(sampler);
  peakRss = Math.max(peakRss, rssMb());
  await outbox.stop(2000);
  await store.close();
  await client.close();
  return {
    first_send_ms: round(firstSendMs),
    first_send_after_start_ms: round(firstSendMs - startedAt),
    replay_ops_per_s: Math.round((sent / elapsed) * 1000),
    replay_cpu_us_per_msg: round(cpuUsPerMsg, 1),
    replay_peak_rss_mb: peakRss,
    pending_at_start: pending,
    sent,
    timed_out: performance.now() >= deadline ? 1 : 0,
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
  // Each phase is a service process: with the heap setting `courier start` applies (the naive
  // baseline too, so the two differ only in what they hold).
  boundServiceHeap();
  const args = JSON.parse(rawArgs ?? "{}");
  const result =
    mode === "fill" ? await fill(args) : mode === "restart" ? await restart(args) : await naive();
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}

const hs = await startFakeHomeserver(TOKEN);

/** A backlog of `messages` made with the homeserver paused, then replayed by a restarted process. */
async function fillAndReplay(messages: number) {
  const dir = mkdtempSync(join(tmpdir(), "courier-bench-mem-"));
  const db = join(dir, "outbox.sqlite");
  try {
    await hs.control("pause", {});
    const filled = await phase("fill", { db, url: hs.url, messages });
    await hs.control("resume", {});
    const replayed = await phase("restart", { db, url: hs.url, warm: messages !== MESSAGES });
    return { filled, replayed };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await hs.control("pause", {});
const baseline = await phase("naive", {});
const sizes = [...new Set([...SCALING, MESSAGES])].sort((a, b) => a - b);
const runs = new Map<number, Awaited<ReturnType<typeof fillAndReplay>>>();
for (const size of sizes) runs.set(size, await fillAndReplay(size));
await hs.stop();

const { filled, replayed: restarted } = runs.get(MESSAGES)!;
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
  restart_replay_peak_rss_mb: restarted.replay_peak_rss_mb,
  restart_rss_mb: restarted.rss_mb,
});
const smallest = runs.get(sizes[0]!)!;
for (const [size, { filled: f, replayed: r }] of runs) {
  report({
    name: "outbox-scaling",
    pending: size,
    ops_per_s: r.replay_ops_per_s!,
    p50_ms: NaN,
    p99_ms: NaN,
    rss_mb: f.rss_mb!,
    fill_cpu_us_per_msg: f.cpu_us_per_msg,
    fill_ops_per_s: f.enqueue_ops_per_s,
    replay_cpu_us_per_msg: r.replay_cpu_us_per_msg,
    replay_peak_rss_mb: r.replay_peak_rss_mb,
    replay_sent: r.sent,
    replay_timed_out: r.timed_out === 1,
    // Cost per message over the smallest backlog's: flat is 1.
    baseline: { name: `pending-${sizes[0]}`, fill_cpu_us_per_msg: smallest.filled.cpu_us_per_msg },
    fill_cpu_ratio: round(f.cpu_us_per_msg! / smallest.filled.cpu_us_per_msg!, 3),
    replay_cpu_ratio: round(r.replay_cpu_us_per_msg! / smallest.replayed.replay_cpu_us_per_msg!, 3),
  });
}
