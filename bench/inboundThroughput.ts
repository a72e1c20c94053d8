// inbound-throughput: how fast the whole framework takes transactions from the homeserver.
// Synapse's workload: transactions of 100 m.room.message events (~40 KB) over 50 rooms, sent one
// at a time (Synapse keeps one transaction in flight per appservice) with undici request() over one
// keep-alive connection, from a client process of its own. Subject: a Courier (SQLite store in a
// temp folder, default settings) with one no-op plugin, in its own process. Baseline, same run: an
// express endpoint in its own process that reads the raw body, JSON.parses it and answers 200 {}.
//
// Two lines: inbound-throughput-acked (events answered 200 per second) and
// inbound-throughput-handled (events per second from the first transaction sent until the plugin's
// handler has run for every event). The baseline handles nothing, so its "handled" is its "acked".
//
// Side by side (#18), same pairs: matrix-appservice's AppService (what matrix-appservice-bridge
// listens with), which stores nothing and emits each event before its 200, so its "handled" is its
// "acked" too; and the same three with 4 transactions in flight (4 connections), which Synapse
// never does. Lines inbound-side-by-side-{acked,handled}, one per subject and in-flight count.
// Last, inbound-journal-floor: what SQLite alone costs an event, beside matrix-appservice's time.
//
//   node bench/inboundThroughput.ts            the whole benchmark (it spawns the processes below)
//   node bench/inboundThroughput.ts <role> <json>  one process: baseline | appservice | courier | client
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { median, percentile, report, round, rssMb } from "./support.ts";
import { inboundFloor } from "./sqliteFloor.ts";

const TXNS = Number(process.env.BENCH_TXNS ?? 400);
const WARMUP_TXNS = Number(process.env.BENCH_WARMUP_TXNS ?? 40);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
/** The client stops sending after this long, whatever BENCH_TXNS says. */
const MAX_SECONDS = Number(process.env.BENCH_MAX_SECONDS ?? 60);
const EVENTS_PER_TXN = 100;
const ROOMS = 50;
const SERVER = "bench.example";
const AS_TOKEN = "bench_as_token_0123456789abcdef";
const HS_TOKEN = "bench_hs_token_0123456789abcdef";
const SELF = fileURLToPath(import.meta.url);
const PREFIX = "/_matrix/app/v1";
/** Transactions in flight at once: Synapse's one, and 4 for the side-by-side. */
const IN_FLIGHT = (process.env.BENCH_IN_FLIGHT ?? "1,4").split(",").map(Number);

/** Milliseconds on a clock all processes of this machine share (for the cross-process "handled"). */
const epoch = () => performance.timeOrigin + performance.now();

type Message =
  | { type: "ready"; url: string }
  | { type: "warm" }
  | { type: "go" }
  | { type: "done"; sent: number[]; acked: number[] }
  | { type: "await"; events: number }
  | { type: "reached"; rss_mb: number; ids: string[]; at: number[] }
  | { type: "stop" };

/** The next message of `type` from a child (or from the parent, with `process`). */
function next<T extends Message["type"]>(
  from: ChildProcess | NodeJS.Process,
  type: T,
): Promise<Extract<Message, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: Message) => {
      if (message.type !== type) return;
      from.off("message", onMessage);
      from.off("exit", onExit);
      resolve(message as Extract<Message, { type: T }>);
    };
    const onExit = (code: number | null) => reject(new Error(`process exited with ${code} awaiting ${type}`));
    from.on("message", onMessage);
    from.on("exit", onExit);
  });
}

const send = (to: ChildProcess | NodeJS.Process, message: Message) => to.send!(message);

// ---- the workload ----------------------------------------------------------------------------

/** Deterministic, so that every run sends the same bytes (mulberry32). */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = (
  "the a of to and in is it you that he was for on are with as his they be at one have this from " +
  "or had by word but what some we can out other were all there when up use your how said an each " +
  "she which do their time if will way about many then them write would like so these her long " +
  "make thing see him two has look more day could go come did number sound no most people my over " +
  "deploy server room message bridge build release yesterday tomorrow meeting review thanks"
).split(" ");

interface Workload {
  /** Transaction bodies, warm-up first. */
  readonly bodies: string[];
  /** The event ids of each transaction. */
  readonly ids: string[][];
}

/** Transactions shaped like Synapse's: events as clients see them, ~400 bytes each, ~40 KB a body. */
function workload(count: number): Workload {
  const random = prng(14);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const rooms = Array.from(
    { length: ROOMS },
    () => `!${Array.from({ length: 18 }, () => pick([...letters])).join("")}:${SERVER}`,
  );
  const servers = [SERVER, SERVER, "matrix.org", "remote.example"];
  const users = Array.from({ length: 200 }, (_, i) => `@user${i}:${pick(servers)}`);
  const sentence = () => {
    let text = "";
    while (text.length < 280 + random() * 40) text += `${pick(WORDS)} `;
    return `${text.trimEnd()}.`;
  };
  const start = Date.now() - 3_600_000;
  const bodies: string[] = [];
  const ids: string[][] = [];
  for (let t = 0; t < count; t++) {
    const events = Array.from({ length: EVENTS_PER_TXN }, (_, e) => ({
      content: { body: sentence(), msgtype: "m.text" },
      origin_server_ts: start + (t * EVENTS_PER_TXN + e) * 10,
      sender: pick(users),
      type: "m.room.message",
      unsigned: { age: Math.floor(random() * 500) },
      event_id: `$${randomBytes(32).toString("base64url")}`,
      room_id: pick(rooms),
    }));
    bodies.push(JSON.stringify({ events }));
    ids.push(events.map((event) => event.event_id));
  }
  return { bodies, ids };
}

// ---- the processes ---------------------------------------------------------------------------

interface ServerArgs {
  port: number;
  hsUrl?: string;
  dir?: string;
}

/** Baseline: as little as an endpoint can do (the body read as the framework reads it). */
async function baselineServer({ port }: ServerArgs): Promise<void> {
  const { default: express } = await import("express");
  let events = 0;
  let target = Infinity;
  let reached: (() => void) | undefined;
  const app = express();
  app.put(
    `${PREFIX}/transactions/:txnId`,
    express.raw({ type: () => true, limit: 32 * 1024 * 1024 }),
    (req, res) => {
      const body = JSON.parse((req.body as Buffer).toString("utf8")) as { events: unknown[] };
      events += body.events.length;
      res.status(200).json({});
      if (events >= target) reached?.();
    },
  );
  const server = app.listen(port, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  send(process, { type: "ready", url: `http://127.0.0.1:${port}` });
  for (;;) {
    const message = await Promise.race([next(process, "await"), next(process, "stop")]);
    if (message.type === "stop") break;
    target = message.events;
    if (events < target) await new Promise<void>((resolve) => (reached = resolve));
    send(process, { type: "reached", rss_mb: rssMb(), ids: [], at: [] });
  }
  server.closeAllConnections();
  server.close();
}

/** matrix-appservice's AppService: events emitted to a no-op listener, then 200; nothing stored. */
async function appserviceServer({ port }: ServerArgs): Promise<void> {
  const { AppService } = await import("matrix-appservice");
  let events = 0;
  let target = Infinity;
  let reached: (() => void) | undefined;
  const appservice = new AppService({ homeserverToken: HS_TOKEN, httpMaxSizeBytes: 32 * 1024 * 1024 });
  appservice.on("event", () => {
    if (++events >= target) reached?.();
  });
  await appservice.listen(port, "127.0.0.1", 511); // 511: Node's default backlog
  send(process, { type: "ready", url: `http://127.0.0.1:${port}` });
  for (;;) {
    const message = await Promise.race([next(process, "await"), next(process, "stop")]);
    if (message.type === "stop") break;
    target = message.events;
    if (events < target) await new Promise<void>((resolve) => (reached = resolve));
    send(process, { type: "reached", rss_mb: rssMb(), ids: [], at: [] });
  }
  await appservice.close();
}

/** Subject: the whole framework, built as an embedding application would, one no-op plugin. */
async function courierServer({ port, hsUrl, dir }: ServerArgs): Promise<void> {
  const { createCourier } = await import("../src/runtime/createCourier.ts");
  const { configSchema } = await import("../src/config/schema.ts");
  const { definePlugin } = await import("../src/plugins/definePlugin.ts");
  // What the handler saw, in order: which event, when. Read once the run is over.
  const ids: string[] = [];
  const at: number[] = [];
  let target = Infinity;
  let reached: (() => void) | undefined;
  const noop = definePlugin({
    name: "noop",
    setup(bot) {
      bot.on("m.room.message", async (ctx) => {
        ids.push(ctx.event.event_id);
        at.push(performance.now());
        if (ids.length >= target) reached?.();
      });
    },
  });
  const url = `http://127.0.0.1:${port}`;
  const config = configSchema.parse({
    homeserver: { url: hsUrl, serverName: SERVER },
    appservice: {
      id: "bench",
      bind: { host: "127.0.0.1", port },
      url,
      senderLocalpart: "bot",
      namespaces: { users: [{ regex: `@bench_.*:${SERVER.replaceAll(".", "\\.")}`, exclusive: true }] },
    },
    store: { path: join(dir!, "courier.sqlite") },
    // Nothing is logged per transaction below "debug"; "warn" keeps start and stop quiet.
    logging: { level: "warn", pretty: false },
    plugins: [{ name: "noop" }],
  });
  const courier = createCourier({
    config,
    registration: {
      id: "bench",
      url,
      asToken: AS_TOKEN,
      hsToken: HS_TOKEN,
      senderLocalpart: "bot",
      namespaces: config.appservice.namespaces,
      rateLimited: false,
      receiveEphemeral: true,
    },
    plugins: { noop },
  });
  await courier.start();
  if (!courier.ping?.ok) throw new Error(`start-up ping failed: ${courier.ping?.diagnosis}`);
  send(process, { type: "ready", url });
  for (;;) {
    const message = await Promise.race([next(process, "await"), next(process, "stop")]);
    if (message.type === "stop") break;
    target = message.events;
    if (ids.length < target) await new Promise<void>((resolve) => (reached = resolve));
    const rss = rssMb();
    const origin = performance.timeOrigin;
    send(process, { type: "reached", rss_mb: rss, ids, at: at.map((t) => origin + t) });
  }
  await courier.stop(5000);
}

interface ClientArgs {
  url: string;
  file: string;
  inFlight: number;
}

/** Synapse's side: one transaction in flight, increasing txnIds, one keep-alive connection (or `inFlight` of each). */
async function client({ url, file, inFlight }: ClientArgs): Promise<void> {
  const { Pool } = await import("undici");
  const bodies = JSON.parse(readFileSync(file, "utf8")) as string[];
  const connection = new Pool(url, { connections: inFlight, keepAliveTimeout: 60_000, pipelining: 1 });
  const headers = { authorization: `Bearer ${HS_TOKEN}`, "content-type": "application/json" };
  let txnId = 0;
  const put = async (body: string) => {
    const res = await connection.request({
      method: "PUT",
      path: `${PREFIX}/transactions/${++txnId}`,
      headers,
      body,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`transaction ${txnId}: ${res.statusCode} ${text}`);
  };
  for (const body of bodies.slice(0, WARMUP_TXNS)) await put(body);
  send(process, { type: "warm" });
  await next(process, "go");
  const sent: number[] = [];
  const acked: number[] = [];
  const deadline = performance.now() + MAX_SECONDS * 1000;
  const measured = bodies.slice(WARMUP_TXNS);
  let nextTxn = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (nextTxn < measured.length && performance.now() <= deadline) {
        const i = nextTxn++;
        sent[i] = epoch();
        await put(measured[i]!);
        acked[i] = epoch();
      }
    }),
  );
  await connection.close();
  send(process, { type: "done", sent, acked });
}

// ---- the run ---------------------------------------------------------------------------------

function spawnRole(role: string, args: object): ChildProcess {
  // The child's stdout (the framework's log lines) goes to our stderr: stdout carries results.
  return spawn(process.execPath, [SELF, role, JSON.stringify(args)], {
    stdio: ["ignore", process.stderr, "inherit", "ipc"],
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error("no free port"))));
    });
  });
}

interface RunResult {
  events: number;
  ackedOpsPerS: number;
  ackedLatency: number[];
  handledOpsPerS: number;
  handledLatency: number[];
  rssMb: number;
}

async function run(
  role: "baseline" | "appservice" | "courier",
  load: Workload,
  file: string,
  hs: { url: string; setAppservice(target: { url: string; hsToken: string; id: string }): void },
  inFlight: number,
): Promise<RunResult> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "courier-bench-inbound-"));
  // The fake homeserver answers the framework's start-up ping by pinging it back.
  hs.setAppservice({ url: `http://127.0.0.1:${port}`, hsToken: HS_TOKEN, id: "bench" });
  const server = spawnRole(role, { port, hsUrl: hs.url, dir } satisfies ServerArgs);
  const exited = new Promise((resolve) => server.once("exit", resolve));
  try {
    const { url } = await next(server, "ready");
    const sender = spawnRole("client", { url, file, inFlight } satisfies ClientArgs);
    const senderExited = new Promise((resolve) => sender.once("exit", resolve));
    await next(sender, "warm");
    // Measure from an empty backlog: the warm-up's events handled first.
    send(server, { type: "await", events: WARMUP_TXNS * EVENTS_PER_TXN });
    await next(server, "reached");
    send(sender, { type: "go" });
    const { sent, acked } = await next(sender, "done");
    await senderExited;
    const total = (WARMUP_TXNS + sent.length) * EVENTS_PER_TXN;
    const timeout = setTimeout(() => server.kill("SIGKILL"), 300_000);
    send(server, { type: "await", events: total });
    const handled = await next(server, "reached");
    clearTimeout(timeout);
    const events = sent.length * EVENTS_PER_TXN;
    const first = sent[0]!;
    const ackedLatency = sent.map((t, i) => acked[i]! - t);
    let handledLatency = ackedLatency;
    const lastAck = Math.max(...acked);
    let handledEnd = lastAck;
    if (role === "courier") {
      const when = new Map<string, number>();
      handled.ids.forEach((id, i) => when.set(id, handled.at[i]!));
      if (handled.ids.length !== total || when.size !== total)
        throw new Error(`${handled.ids.length} handler runs, ${when.size} events, ${total} sent`);
      handledLatency = sent.map((t, i) => {
        let last = 0;
        for (const id of load.ids[WARMUP_TXNS + i]!) last = Math.max(last, when.get(id)!);
        return last - t;
      });
      handledEnd = Math.max(...handledLatency.map((l, i) => sent[i]! + l));
    }
    send(server, { type: "stop" });
    await exited;
    return {
      events,
      ackedOpsPerS: (events / (lastAck - first)) * 1000,
      ackedLatency,
      handledOpsPerS: (events / (handledEnd - first)) * 1000,
      handledLatency,
      rssMb: handled.rss_mb,
    };
  } finally {
    if (server.exitCode === null && server.signalCode === null) server.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { FakeHomeserver } = await import("../test/support/FakeHomeserver.ts");
  const dir = mkdtempSync(join(tmpdir(), "courier-bench-txns-"));
  const file = join(dir, "transactions.json");
  const load = workload(WARMUP_TXNS + TXNS);
  writeFileSync(file, JSON.stringify(load.bodies));
  const txnBytes = load.bodies.reduce((n, b) => n + Buffer.byteLength(b), 0) / load.bodies.length;
  // Only for the framework's start-up ping and its bot device: idle while transactions flow.
  const hs = await FakeHomeserver.start({ asToken: AS_TOKEN, serverName: SERVER, record: false });
  const results = new Map<
    number,
    { baselines: RunResult[]; appservices: RunResult[]; couriers: RunResult[] }
  >();
  try {
    for (const inFlight of IN_FLIGHT) {
      const set = {
        baselines: [] as RunResult[],
        appservices: [] as RunResult[],
        couriers: [] as RunResult[],
      };
      results.set(inFlight, set);
      // Alternate, so that machine noise hits all alike.
      for (let r = 0; r < RUNS; r++) {
        set.baselines.push(await run("baseline", load, file, hs, inFlight));
        set.appservices.push(await run("appservice", load, file, hs, inFlight));
        set.couriers.push(await run("courier", load, file, hs, inFlight));
      }
    }
  } finally {
    await hs.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  type Key = "ackedOpsPerS" | "handledOpsPerS";
  const pick = (runs: RunResult[], key: Key) => runs.find((r) => r[key] === median(runs.map((x) => x[key])))!;
  const figures = (runs: RunResult[], key: Key, latency: "ackedLatency" | "handledLatency") => {
    const chosen = pick(runs, key);
    return {
      ops_per_s: Math.round(chosen[key]),
      p50_ms: round(percentile(chosen[latency], 50)),
      p99_ms: round(percentile(chosen[latency], 99)),
      rss_mb: chosen.rssMb,
    };
  };
  const shape = {
    events_per_txn: EVENTS_PER_TXN,
    txn_kb: round(txnBytes / 1024, 1),
    rooms: ROOMS,
    runs: RUNS,
  };
  for (const [suffix, key, latency] of [
    ["acked", "ackedOpsPerS", "ackedLatency"],
    ["handled", "handledOpsPerS", "handledLatency"],
  ] as const) {
    const single = results.get(1);
    if (single) {
      const { baselines, couriers } = single;
      const ratios = couriers.map((c, i) => c[key] / baselines[i]![key]);
      const subject = pick(couriers, key);
      report({
        name: `inbound-throughput-${suffix}`,
        ...figures(couriers, key, latency),
        baseline: { name: "express-parse-only", ...figures(baselines, key, latency) },
        // Each pair ran back to back, so a pair's ratio is what noise spares best; the median of them.
        ratio: round(median(ratios), 3),
        events: subject.events,
        transactions: subject.events / EVENTS_PER_TXN,
        ...shape,
        warmup_txns: WARMUP_TXNS,
        all_ratios: ratios.map((r) => round(r, 3)),
        all_ops_per_s: couriers.map((c) => Math.round(c[key])),
      });
    }
    for (const [inFlight, { appservices, couriers }] of results) {
      // matrix-courier over matrix-appservice, per back-to-back pair, then the median.
      const ratios = couriers.map((c, i) => c[key] / appservices[i]![key]);
      for (const [client, runs] of [
        ["matrix-courier", couriers],
        ["matrix-appservice", appservices],
      ] as const) {
        report({
          name: `inbound-side-by-side-${suffix}`,
          client,
          in_flight: inFlight,
          ...figures(runs, key, latency),
          baseline: { name: "matrix-appservice", ...figures(appservices, key, latency) },
          ratio_courier_to_appservice: round(median(ratios), 3),
          all_ratios: ratios.map((r) => round(r, 3)),
          events: runs[0]!.events,
          ...shape,
        });
      }
    }
  }

  // inbound-journal-floor: what SQLite alone costs per event (sqliteFloor.ts), in this process, on
  // the same transactions, next to matrix-appservice's time per event (one in flight). With one
  // transaction in flight the commit comes before the 200, so a server that journals takes at
  // least that time plus the journal's: `best_ratio` is the acked ratio it could reach if
  // everything else it did (parsing, dispatching, bookkeeping) cost nothing more than
  // matrix-appservice's own work; `minimal_best_ratio` the same with the fewest statements.
  const single = results.get(1);
  if (single) {
    const appserviceUs = 1e6 / pick(single.appservices, "ackedOpsPerS").ackedOpsPerS;
    const floor = await inboundFloor(load.bodies.slice(0, TXNS));
    report({
      name: "inbound-journal-floor",
      ops_per_s: Math.round(1e6 / floor.minimal_us),
      p50_ms: floor.commit_p50_ms,
      p99_ms: floor.commit_p99_ms,
      rss_mb: rssMb(),
      minimal_us_per_event: floor.minimal_us,
      journal_us_per_event: floor.ours_us,
      baseline: { name: "matrix-appservice", us_per_event: round(appserviceUs) },
      best_ratio: round(appserviceUs / (appserviceUs + floor.ours_us), 3),
      minimal_best_ratio: round(appserviceUs / (appserviceUs + floor.minimal_us), 3),
      ...shape,
    });
  }
}

const [role, args] = process.argv.slice(2);
const parsed = args === undefined ? {} : (JSON.parse(args) as object);
switch (role) {
  case undefined:
    await main();
    break;
  // The roles exit once done: nothing they leave open (a keep-alive socket) holds up the run.
  case "baseline":
    await baselineServer(parsed as ServerArgs);
    process.exit(0);
    break;
  case "appservice":
    await appserviceServer(parsed as ServerArgs);
    process.exit(0);
    break;
  case "courier":
    await courierServer(parsed as ServerArgs);
    process.exit(0);
    break;
  case "client":
    await client(parsed as ClientArgs);
    process.exit(0);
    break;
  default:
    throw new Error(`unknown role ${role}`);
}
