// outbox-throughput-pg: 1, 2 and 3 instances sharing one PostgreSQL outbox (lanes leased,
// PgLaneLeases), each a process of its own sending 16 lanes at once, against the fake homeserver
// answering every request after 5 ms (as over a network). A burst journaled in 60 rooms is timed
// from its first enqueue to the homeserver holding all of it. The baseline, in the same run: a
// plain undici request() loop with as many requests in flight as the instances together.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";
import { roomId, userId } from "../src/ids.ts";
import { Outbox } from "../src/outbox/Outbox.ts";
import { createPool, migratePostgres } from "../src/store/postgres/PgDatabase.ts";
import { PgOutboxStore } from "../src/store/postgres/PgOutboxStore.ts";
import { startPostgresCluster } from "../test/support/postgresCluster.ts";
import { median, percentile, report, round, rssMb, startFakeHomeserver } from "./support.ts";

const MESSAGES = Number(process.env.BENCH_PG_MESSAGES ?? 6000);
const ROOMS = 60;
const PER_INSTANCE = 16;
const LATENCY_MS = 5;
const TOKEN = "bench-pg-token";
const SENDER = fileURLToPath(new URL("../test/support/laneSenderChild.ts", import.meta.url));

const hs = await startFakeHomeserver(TOKEN);
await hs.control("faults", { delayMs: LATENCY_MS });
const cluster = await startPostgresCluster();
const stored = async () => ((await hs.control("stats")) as { stored: number }).stored;
const content = (n: number) => ({ msgtype: "m.text", body: `benchmark message number ${n}` });

async function baseline(inFlight: number, run: number): Promise<{ opsPerS: number; latency: number[] }> {
  const pool = new Pool(hs.url, { connections: inFlight });
  const headers = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
  const latency: number[] = [];
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < MESSAGES) {
        const n = next++;
        const t = performance.now();
        const res = await pool.request({
          method: "PUT",
          path: `/_matrix/client/v3/rooms/${encodeURIComponent(`!b${run}_${n % ROOMS}:bench`)}/send/m.room.message/b${run}.${n}`,
          headers,
          body: JSON.stringify(content(n)),
        });
        await res.body.dump();
        latency.push(performance.now() - t);
      }
    }),
  );
  const opsPerS = (MESSAGES / (performance.now() - start)) * 1000;
  await pool.close();
  return { opsPerS, latency };
}

async function instances(count: number, run: number): Promise<{ opsPerS: number; latency: number[] }> {
  const url = await cluster.createDatabase();
  const pool = createPool({ url });
  await migratePostgres(pool);
  const children: Array<{ child: ChildProcess; output: () => string }> = [];
  for (let i = 0; i < count; i++) {
    const options = {
      url,
      instanceId: `bench-${i}`,
      leaseMs: 3000,
      homeserverUrl: hs.url,
      asToken: TOKEN,
      maxConcurrency: PER_INSTANCE,
    };
    const child = spawn(process.execPath, [SENDER, JSON.stringify(options)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    child.stdout!.on("data", (chunk: Buffer) => (output += chunk));
    children.push({ child, output: () => output });
  }
  while (!children.every((c) => c.output().includes("ready"))) await new Promise((r) => setTimeout(r, 20));
  // The producer journals only, as handlers on any instance would.
  const producer = new Outbox({
    store: new PgOutboxStore(pool),
    transport: { send: () => Promise.reject(new Error("the producer never sends")) },
    appserviceId: "lanes-test",
    botUserId: userId("@bot:bench"),
  });
  const before = await stored();
  const start = performance.now();
  // All at once: the store commits them in submission order, so each room's order holds, and
  // the producer is not what is measured.
  await Promise.all(
    Array.from({ length: MESSAGES }, (_, n) =>
      producer.enqueue({
        kind: "send",
        roomId: roomId(`!pg${run}_${count}_${n % ROOMS}:bench`),
        eventType: "m.room.message",
        content: content(n),
        cause: `c${n}`,
        ordinal: 0,
      }),
    ),
  );
  const deadline = Date.now() + 300_000;
  while ((await stored()) - before < MESSAGES) {
    if (Date.now() > deadline) throw new Error(`outbox-throughput-pg: ${count} instance(s) did not finish`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const opsPerS = (MESSAGES / (performance.now() - start)) * 1000;
  const latency: number[] = [];
  for (const { child, output } of children) {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
    const line = output()
      .split("\n")
      .find((l) => l.startsWith('{"sent"'));
    if (line) latency.push(...(JSON.parse(line) as { latencies: number[] }).latencies);
  }
  await pool.end();
  return { opsPerS, latency };
}

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const one: number[] = [];
for (const count of [1, 2, 3]) {
  const runs: Array<{
    box: Awaited<ReturnType<typeof instances>>;
    base: Awaited<ReturnType<typeof baseline>>;
  }> = [];
  for (let run = 0; run < RUNS; run++) {
    runs.push({ base: await baseline(PER_INSTANCE * count, run), box: await instances(count, run) });
  }
  const box = median(runs.map((r) => r.box.opsPerS));
  const base = median(runs.map((r) => r.base.opsPerS));
  if (count === 1) one.push(box);
  const latency = runs.flatMap((r) => r.box.latency);
  const baseLatency = runs.flatMap((r) => r.base.latency);
  report({
    name: `outbox-throughput-pg-${count}`,
    ops_per_s: Math.round(box),
    p50_ms: round(percentile(latency, 50)),
    p99_ms: round(percentile(latency, 99)),
    rss_mb: rssMb(),
    baseline: {
      name: "undici-request-loop",
      in_flight: PER_INSTANCE * count,
      ops_per_s: Math.round(base),
      p50_ms: round(percentile(baseLatency, 50)),
      p99_ms: round(percentile(baseLatency, 99)),
    },
    instances: count,
    ratio: round(box / base, 3),
    // Against one instance in this run: the scaling the lanes' leases give.
    scaling: round(box / one[0]!, 2),
    homeserver_latency_ms: LATENCY_MS,
    messages: MESSAGES,
  });
}
await cluster.stop();
await hs.stop();
