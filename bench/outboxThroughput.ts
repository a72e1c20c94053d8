// outbox-throughput: 20,000 room messages to 100 rooms through the durable outbox against the
// fake homeserver (in another process, answering at once), versus the baseline measured in the
// same run: a plain loop of undici request() PUTs at the same concurrency, with no journal.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pool } from "undici";
import { MatrixClient } from "../src/matrix/MatrixClient.ts";
import { Outbox } from "../src/outbox/Outbox.ts";
import { SqliteOutboxStore } from "../src/store/sqlite/SqliteOutboxStore.ts";
import { openSqlite } from "../src/store/sqlite/SqliteDatabase.ts";
import { WalCheckpointer } from "../src/store/sqlite/WalCheckpointer.ts";
import { roomId, userId } from "../src/ids.ts";
import { median, percentile, report, round, rssMb, startFakeHomeserver } from "./support.ts";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000);
const ROOMS = 100;
const CONCURRENCY = 64;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const TOKEN = "bench-as-token";

interface RunResult {
  opsPerS: number;
  latency: number[];
  /** CPU (user + system) this process spent per message during the run, in µs. */
  cpuUsPerMsg: number;
  enqueue?: number[];
}

/** CPU µs per message since `start` (a process.cpuUsage() taken when the run began). */
const cpuPerMessage = (start: NodeJS.CpuUsage): number => {
  const { user, system } = process.cpuUsage(start);
  return (user + system) / MESSAGES;
};

const content = (n: number) => ({ msgtype: "m.text", body: `benchmark message number ${n}` });
const hs = await startFakeHomeserver(TOKEN);

// One connection pool per side for the whole benchmark, warmed by the first run: a service keeps
// its connections, and a run should not measure 64 TCP handshakes.
const pool = new Pool(hs.url, { connections: CONCURRENCY, keepAliveTimeout: 30_000 });
const client = new MatrixClient({ homeserverUrl: hs.url, accessToken: TOKEN, connections: CONCURRENCY });

async function baselineRun(run: number): Promise<RunResult> {
  const headers = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
  const latency: number[] = [];
  let next = 0;
  const cpu = process.cpuUsage();
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < MESSAGES) {
        const n = next++;
        const room = encodeURIComponent(`!base${run}_${n % ROOMS}:bench`);
        const t = performance.now();
        const res = await pool.request({
          method: "PUT",
          path: `/_matrix/client/v3/rooms/${room}/send/m.room.message/b${run}.${n}`,
          headers,
          body: JSON.stringify(content(n)),
        });
        await res.body.json();
        if (res.statusCode !== 200) throw new Error(`baseline got ${res.statusCode}`);
        latency.push(performance.now() - t);
      }
    }),
  );
  const elapsed = performance.now() - start;
  return { opsPerS: (MESSAGES / elapsed) * 1000, latency, cpuUsPerMsg: cpuPerMessage(cpu) };
}

async function outboxRun(run: number): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), "courier-bench-"));
  const path = join(dir, "outbox.sqlite");
  const db = openSqlite({ path });
  const store = new SqliteOutboxStore(db);
  // As the runtime does: WAL checkpoints in a worker, not inside the writer's commits.
  const checkpointer = process.env.BENCH_CHECKPOINTER === "0" ? undefined : new WalCheckpointer(db, path);
  const outbox = new Outbox({
    store,
    transport: client,
    appserviceId: "bench",
    botUserId: userId("@bot:bench"),
    maxConcurrency: CONCURRENCY,
    rate: { perSecond: 1e9, burst: 1e9 },
  });
  const latency: number[] = [];
  const enqueue: number[] = [];
  outbox.on("sent", (_row, _eventId, ms) => latency.push(ms));
  await outbox.start();
  const cpu = process.cpuUsage();
  const start = performance.now();
  // One producer per room, each awaiting its own enqueue: how plugin handlers use the outbox.
  await Promise.all(
    Array.from({ length: ROOMS }, async (_, r) => {
      const room = roomId(`!box${run}_${r}:bench`);
      for (let n = r; n < MESSAGES; n += ROOMS) {
        const t = performance.now();
        await outbox.enqueue({
          kind: "send",
          roomId: room,
          eventType: "m.room.message",
          content: content(n),
          cause: `c${n}`,
          ordinal: 0,
        });
        enqueue.push(performance.now() - t);
      }
    }),
  );
  await outbox.onIdle();
  const elapsed = performance.now() - start;
  const cpuUsPerMsg = cpuPerMessage(cpu);
  const { totals } = await outbox.stats();
  if (totals.sent !== MESSAGES) throw new Error(`outbox sent ${totals.sent} of ${MESSAGES}`);
  await outbox.stop();
  await checkpointer?.stop();
  await store.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
  return { opsPerS: (MESSAGES / elapsed) * 1000, latency, cpuUsPerMsg, enqueue };
}

// Warm both paths (JIT, connections), then alternate so machine noise hits both alike.
await baselineRun(-1);
await outboxRun(-1);
const baselines: RunResult[] = [];
const outboxes: RunResult[] = [];
for (let run = 0; run < RUNS; run++) {
  baselines.push(await baselineRun(run));
  outboxes.push(await outboxRun(run));
}
await pool.close();
await client.close();
await hs.stop();

const ratios = outboxes.map((o, i) => o.opsPerS / baselines[i]!.opsPerS);
const pick = (runs: RunResult[]) => runs.find((r) => r.opsPerS === median(runs.map((x) => x.opsPerS)))!;
const base = pick(baselines);
const box = pick(outboxes);
report({
  name: "outbox-throughput",
  ops_per_s: Math.round(box.opsPerS),
  p50_ms: round(percentile(box.latency, 50)),
  p99_ms: round(percentile(box.latency, 99)),
  rss_mb: rssMb(),
  // The process that runs the outbox (the fake homeserver runs in another one): median of the runs.
  cpu_us_per_msg: round(median(outboxes.map((o) => o.cpuUsPerMsg)), 1),
  baseline: {
    name: "undici-request-loop",
    ops_per_s: Math.round(base.opsPerS),
    p50_ms: round(percentile(base.latency, 50)),
    p99_ms: round(percentile(base.latency, 99)),
    cpu_us_per_msg: round(median(baselines.map((b) => b.cpuUsPerMsg)), 1),
  },
  // Each pair ran back to back, so a pair's ratio is what noise spares best; the median of them.
  ratio: round(median(ratios), 3),
  enqueue_p50_ms: round(percentile(box.enqueue!, 50), 3),
  enqueue_p99_ms: round(percentile(box.enqueue!, 99), 3),
  messages: MESSAGES,
  rooms: ROOMS,
  concurrency: CONCURRENCY,
  runs: RUNS,
  all_ratios: ratios.map((r) => round(r, 3)),
});
