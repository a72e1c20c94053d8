// outbound-side-by-side: 20,000 messages into 100 rooms through matrix-courier, matrix-bot-sdk's
// MatrixClient, matrix-appservice-bridge's Intent and a plain undici request() loop, each in a
// process of its own, against the fake homeserver in another one: answering at once, then with
// 5 ms a request, each client at the best of a few concurrencies; then with faults injected, where
// what arrived is counted on the homeserver's side. One JSON line per client and scenario, and
// one (outbox-sqlite-floor) for what SQLite alone costs a message, beside the undici loop's CPU.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { report, round, rssMb, startFakeHomeserver, type FakeHomeserverProcess } from "./support.ts";
import { CLIENTS, type ClientName } from "./outbound/clients.ts";
import type { ClientResult, ClientRun } from "./outbound/clientMain.ts";
import { countArrivals, type StoredEvent } from "./outbound/arrivals.ts";
import { ensurePeersInstalled } from "./outbound/peersInstall.ts";
import { outboxFloor } from "./sqliteFloor.ts";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000);
const ROOMS = 100;
const CONCURRENCIES = (process.env.BENCH_CONCURRENCIES ?? "16,64,256").split(",").map(Number);
const MAX_SECONDS = Number(process.env.BENCH_MAX_SECONDS ?? 120);
/** A fault run may be slow (a peer whose caller retries, matrix-courier honouring every 429). */
const FAULT_MAX_SECONDS = Number(process.env.BENCH_FAULT_MAX_SECONDS ?? 300);
const TOKEN = "bench-as-token";
const CHILD = fileURLToPath(new URL("outbound/clientMain.ts", import.meta.url));
// 10% 429 (retry_after_ms 50), 2% 500, 1% connection reset, 1% answer lost after the event was stored.
const FAULTS = { rate429: 0.1, retryAfterMs: 50, rate500: 0.02, rateReset: 0.01, rateDropAfterProcess: 0.01 };
/** Which parts run: instant, 5ms, faults (BENCH_PARTS, comma-separated; all by default). */
const PARTS = new Set((process.env.BENCH_PARTS ?? "instant,5ms,faults").split(","));
const SCENARIOS = [
  { name: "instant", faults: {} },
  { name: "5ms", faults: { delayMs: 5 } },
].filter((s) => PARTS.has(s.name));

ensurePeersInstalled();
let runs = 0;

function runClient(run: ClientRun): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--no-deprecation", CHILD, JSON.stringify(run)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.once("close", (code) => {
      const line = out.trim().split("\n").pop();
      if (code !== 0 || !line) reject(new Error(`${run.client} exited with ${code}`));
      else resolve(JSON.parse(line) as ClientResult);
    });
  });
}

/** Fresh homeserver state and rooms (each with power levels, as a real room has: the bridge reads them). */
async function prepare(hs: FakeHomeserverProcess, prefix: string, faults: object): Promise<void> {
  await hs.control("reset", {});
  for (let i = 0; i < ROOMS; i++) {
    const room = encodeURIComponent(`!${prefix}${i}:bench`);
    const res = await fetch(`${hs.url}/_matrix/client/v3/rooms/${room}/state/m.room.power_levels/`, {
      method: "PUT",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ users_default: 0, events_default: 0, state_default: 50 }),
    });
    if (res.status !== 200) throw new Error(`room set-up got ${res.status}`);
  }
  await hs.control("faults", faults);
}

async function measure(
  maxSeconds: number,
  hs: FakeHomeserverProcess,
  client: ClientName,
  concurrency: number,
  faults: object,
  retry: ClientRun["retry"],
) {
  const prefix = `r${runs++}_`;
  await prepare(hs, prefix, faults);
  const run = `m${runs}`;
  const result = await runClient({
    client,
    url: hs.url,
    token: TOKEN,
    concurrency,
    messages: MESSAGES,
    rooms: ROOMS,
    roomPrefix: prefix,
    run,
    retry,
    maxSeconds,
  });
  return { result, run };
}

const common = { messages: MESSAGES, rooms: ROOMS };

/**
 * outbox-sqlite-floor: what SQLite alone costs per message (sqliteFloor.ts), here in this
 * process, next to the undici loop's CPU per message of the same run. `floor_cpu_ratio`: the
 * undici loop's CPU with the fewest SQLite writes a journaled request needs added, over the
 * undici loop's: the best CPU ratio any client that journals on node:sqlite could reach, and
 * `floor_throughput_ratio` its inverse, the best throughput ratio where the client's CPU is the
 * limit; `store_cpu_ratio`: the same with matrix-courier's own store.
 */
async function reportFloor(undici: ClientResult, courier: ClientResult): Promise<void> {
  const floor = await outboxFloor(MESSAGES, ROOMS);
  report({
    name: "outbox-sqlite-floor",
    ops_per_s: Math.round(1e6 / floor.minimal_us),
    p50_ms: floor.commit_p50_ms,
    p99_ms: floor.commit_p99_ms,
    rss_mb: rssMb(),
    minimal_us_per_msg: floor.minimal_us,
    store_us_per_msg: floor.ours_us,
    baseline: { name: "undici-request-loop", cpu_us_per_msg: undici.cpu_us_per_msg },
    courier_cpu_us_per_msg: courier.cpu_us_per_msg,
    floor_cpu_ratio: round((undici.cpu_us_per_msg + floor.minimal_us) / undici.cpu_us_per_msg, 3),
    floor_throughput_ratio: round(undici.cpu_us_per_msg / (undici.cpu_us_per_msg + floor.minimal_us), 3),
    store_cpu_ratio: round((undici.cpu_us_per_msg + floor.ours_us) / undici.cpu_us_per_msg, 3),
    ...common,
  });
}
const best = new Map<ClientName, number>();
const hs = await startFakeHomeserver(TOKEN);
for (const scenario of SCENARIOS) {
  const results = new Map<
    ClientName,
    ClientResult & { concurrency: number; sweep: Record<number, number> }
  >();
  // Clients take turns at each concurrency, so that a spell of load on the shared machine falls
  // on all of them rather than on one client's whole sweep.
  for (const concurrency of CONCURRENCIES) {
    for (const client of CLIENTS) {
      const { result } = await measure(MAX_SECONDS, hs, client, concurrency, scenario.faults, "none");
      const sweep = { ...results.get(client)?.sweep, [concurrency]: result.ops_per_s };
      const top = results.get(client);
      if (!top || result.ops_per_s > top.ops_per_s) results.set(client, { ...result, concurrency, sweep });
      else top.sweep = sweep;
    }
  }
  const courier = results.get("matrix-courier")!;
  if (scenario.name === "instant") {
    for (const [client, r] of results) best.set(client, r.concurrency);
    await reportFloor(results.get("undici-request-loop")!, courier);
  }
  for (const [client, r] of results) {
    report({
      name: `outbound-${scenario.name}`,
      client,
      ops_per_s: r.ops_per_s,
      p50_ms: r.p50_ms,
      p99_ms: r.p99_ms,
      rss_mb: r.peak_rss_mb,
      cpu_us_per_msg: r.cpu_us_per_msg,
      concurrency: r.concurrency,
      // messages/s by concurrency: how the best was chosen.
      sweep: r.sweep,
      baseline: {
        name: "matrix-courier",
        ops_per_s: courier.ops_per_s,
        cpu_us_per_msg: courier.cpu_us_per_msg,
      },
      ops_ratio_to_courier: round(r.ops_per_s / courier.ops_per_s, 3),
      cpu_ratio_to_courier: round(r.cpu_us_per_msg / courier.cpu_us_per_msg, 3),
      errors: r.errors,
      timed_out: r.timed_out,
      ...common,
    });
  }
}
await hs.stop();

// Faults: the homeserver records what it stored, so arrivals are counted on its side. Peers run
// twice: as the library leaves it (an error reaches the caller, who gives the message up), and with
// the caller retrying; matrix-courier retries by itself.
const recording = await startFakeHomeserver(TOKEN, { record: true });
for (const client of PARTS.has("faults") ? CLIENTS : []) {
  for (const retry of client === "matrix-courier" ? (["none"] as const) : (["none", "caller"] as const)) {
    const concurrency = best.get(client) ?? 64;
    const { result, run } = await measure(FAULT_MAX_SECONDS, recording, client, concurrency, FAULTS, retry);
    const { events } = (await recording.control("events")) as { events: StoredEvent[] };
    report({
      name: "outbound-faults",
      client,
      retry: client === "matrix-courier" ? "outbox" : retry,
      ops_per_s: result.ops_per_s,
      p50_ms: result.p50_ms,
      p99_ms: result.p99_ms,
      rss_mb: result.peak_rss_mb,
      cpu_us_per_msg: result.cpu_us_per_msg,
      concurrency,
      baseline: null,
      attempted: result.attempted,
      ...countArrivals(events, run),
      errors: result.errors,
      timed_out: result.timed_out,
      faults: FAULTS,
      ...common,
    });
  }
}
await recording.stop();
