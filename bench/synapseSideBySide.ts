// synapse-side-by-side: room messages into a real Synapse (rate limits off: the registration says
// rate_limited false and LocalSynapse's rc_message is unlimited) through matrix-courier's outbox
// versus a plain loop of undici PUTs with the as_token at the same concurrency, each client in a
// process of its own, alternating. Synapse is the limit here, so the ratio says whether the
// framework adds a limit of its own. Skipped (a note on stderr) when Synapse is not installed
// (scripts/synapse/install.sh), unless BENCH_SYNAPSE=1, which installs it.
import { createServer } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";
import { LocalSynapse, isSynapseInstalled } from "../scripts/synapse/LocalSynapse.ts";
import { median, report, round } from "./support.ts";
import type { ClientResult, ClientRun } from "./outbound/clientMain.ts";

const MESSAGES = Number(process.env.BENCH_SYNAPSE_MESSAGES ?? 1_000);
const ROOMS = 10;
const CONCURRENCY = Number(process.env.BENCH_SYNAPSE_CONCURRENCY ?? 16);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const MAX_SECONDS = Number(process.env.BENCH_MAX_SECONDS ?? 120);
const SERVER = "localhost";
const CHILD = fileURLToPath(new URL("outbound/clientMain.ts", import.meta.url));

if (!isSynapseInstalled() && process.env.BENCH_SYNAPSE !== "1") {
  process.stderr.write(
    "synapse-side-by-side: skipped, Synapse is not installed (BENCH_SYNAPSE=1 installs it)\n",
  );
  process.exit(0);
}

function runClient(run: ClientRun): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, JSON.stringify(run)], {
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

const dir = mkdtempSync(path.join(tmpdir(), "courier-bench-synapse-"));
// Synapse pushes the bot's own events to the appservice: answer them, so that it does not back off
// and retry against a closed port while the benchmark runs.
const sink = createServer((req, res) => {
  req.resume();
  req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end("{}"));
});
await new Promise<void>((resolve) => sink.listen(0, "127.0.0.1", resolve));
const sinkPort = (sink.address() as { port: number }).port;
const asToken = `as_${randomBytes(24).toString("hex")}`;
const registration = path.join(dir, "registration.yaml");
writeFileSync(
  registration,
  yaml.dump({
    id: "bench",
    url: `http://127.0.0.1:${sinkPort}`,
    as_token: asToken,
    hs_token: `hs_${randomBytes(24).toString("hex")}`,
    sender_localpart: "bench",
    namespaces: { users: [{ exclusive: true, regex: `@bench_.*:${SERVER}` }], aliases: [], rooms: [] },
    rate_limited: false,
  }),
  { mode: 0o600 },
);
const synapse = await LocalSynapse.start({
  dataDir: path.join(dir, "synapse"),
  registrationFiles: [registration],
});
const botUserId = `@bench:${SERVER}`;
try {
  const roomIds: string[] = [];
  for (let i = 0; i < ROOMS; i++) {
    const res = await fetch(`${synapse.baseUrl}/_matrix/client/v3/createRoom`, {
      method: "POST",
      headers: { authorization: `Bearer ${asToken}`, "content-type": "application/json" },
      body: JSON.stringify({ preset: "private_chat", name: `bench ${i}` }),
    });
    const body = (await res.json()) as { room_id?: string };
    if (!res.ok || !body.room_id) throw new Error(`createRoom: ${res.status} ${JSON.stringify(body)}`);
    roomIds.push(body.room_id);
  }
  const measure = (client: ClientRun["client"], r: number) =>
    runClient({
      client,
      url: synapse.baseUrl,
      token: asToken,
      concurrency: CONCURRENCY,
      messages: MESSAGES,
      rooms: ROOMS,
      roomPrefix: "",
      run: `${client === "matrix-courier" ? "c" : "u"}${r}`,
      retry: "none",
      maxSeconds: MAX_SECONDS,
      roomIds,
      botUserId,
      warmup: 100,
    });
  const loops: ClientResult[] = [];
  const couriers: ClientResult[] = [];
  for (let r = 0; r < RUNS; r++) {
    loops.push(await measure("undici-request-loop", r));
    couriers.push(await measure("matrix-courier", r));
  }
  const ratios = couriers.map((c, i) => c.ops_per_s / loops[i]!.ops_per_s);
  const pick = (runs: ClientResult[]) =>
    runs.find((x) => x.ops_per_s === median(runs.map((y) => y.ops_per_s)))!;
  const courier = pick(couriers);
  const loop = pick(loops);
  report({
    name: "synapse-side-by-side",
    client: "matrix-courier",
    ops_per_s: courier.ops_per_s,
    p50_ms: courier.p50_ms,
    p99_ms: courier.p99_ms,
    rss_mb: courier.peak_rss_mb,
    cpu_us_per_msg: courier.cpu_us_per_msg,
    baseline: {
      name: "undici-request-loop",
      ops_per_s: loop.ops_per_s,
      p50_ms: loop.p50_ms,
      p99_ms: loop.p99_ms,
      rss_mb: loop.peak_rss_mb,
      cpu_us_per_msg: loop.cpu_us_per_msg,
    },
    // Each pair ran back to back; the median of the pairs' ratios.
    ratio: round(median(ratios), 3),
    all_ratios: ratios.map((x) => round(x, 3)),
    errors: couriers.reduce((n, c) => n + c.errors, 0) + loops.reduce((n, c) => n + c.errors, 0),
    ...(loops.find((l) => l.first_error)
      ? { first_error: loops.find((l) => l.first_error)!.first_error }
      : {}),
    messages: MESSAGES,
    rooms: ROOMS,
    concurrency: CONCURRENCY,
    runs: RUNS,
  });
} finally {
  await synapse.stop();
  sink.close();
  rmSync(dir, { recursive: true, force: true });
}
