// One client of the side-by-side benchmark, in a process of its own so that process.cpuUsage()
// and the peak RSS are this client's alone. Argument: one JSON object (ClientRun). Warms up with
// WARMUP messages into the same rooms, then sends `messages` and prints one JSON line (ClientResult).
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { percentile, round } from "../support.ts";
import {
  createClient,
  retryAfterMs,
  type ClientName,
  type DirectClient,
  type OutboxClient,
} from "./clients.ts";

export interface ClientRun {
  client: ClientName;
  url: string;
  token: string;
  concurrency: number;
  messages: number;
  rooms: number;
  /** Room ids are `!<roomPrefix><i>:bench`; the content carries `run` and the message's number. */
  roomPrefix: string;
  run: string;
  /** "none": an error reaches the caller and the message is given up (as each library leaves it). "caller": the caller retries a failed send up to 5 times, waiting retry_after_ms on a 429. */
  retry: "none" | "caller";
  maxSeconds: number;
  /** Rooms that exist already (a real homeserver's), instead of `rooms` made-up ids. */
  roomIds?: string[];
  botUserId?: string;
  /** @default 1,000 */
  warmup?: number;
}

export interface ClientResult {
  ops_per_s: number;
  p50_ms: number;
  p99_ms: number;
  peak_rss_mb: number;
  cpu_us_per_msg: number;
  /** Messages handed to the client (sent, or enqueued) before the run ended or timed out. */
  attempted: number;
  /** Sends that ended in an error thrown at the caller (after its retries). */
  errors: number;
  /** The first such error's message, to tell a fault from a broken set-up. */
  first_error?: string;
  timed_out: boolean;
}

const CALLER_ATTEMPTS = 5;
const CALLER_BACKOFF_MS = 100;

const args = JSON.parse(process.argv[2] ?? "{}") as ClientRun;
const rooms = args.roomIds ?? Array.from({ length: args.rooms }, (_, i) => `!${args.roomPrefix}${i}:bench`);
const client = await createClient(args.client, {
  url: args.url,
  token: args.token,
  concurrency: args.concurrency,
  ...(args.botUserId ? { botUserId: args.botUserId } : {}),
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function direct(c: DirectClient, run: string, messages: number, deadline: number) {
  const latency: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  const sendOne = async (n: number) => {
    const room = rooms[n % rooms.length]!;
    for (let attempt = 1; ; attempt++) {
      try {
        return await c.send(room, run, n);
      } catch (err) {
        if (args.retry === "none" || attempt === CALLER_ATTEMPTS) throw err;
        await sleep(retryAfterMs(err) ?? CALLER_BACKOFF_MS);
      }
    }
  };
  await Promise.all(
    Array.from({ length: args.concurrency }, async () => {
      while (next < messages && performance.now() < deadline) {
        const n = next++;
        const t = performance.now();
        try {
          await sendOne(n);
          latency.push(performance.now() - t);
        } catch (err) {
          errors++;
          firstError ??= String((err as Error)?.message ?? err).slice(0, 200);
        }
      }
    }),
  );
  return { latency, errors, firstError, sent: next };
}

async function outbox(c: OutboxClient, run: string, messages: number, deadline: number) {
  // One producer per room, each awaiting its enqueue: how plugin handlers use the outbox.
  let sent = 0;
  await Promise.all(
    rooms.map(async (room, r) => {
      for (let n = r; n < messages && performance.now() < deadline; n += rooms.length) {
        await c.enqueue(room, run, n);
        sent++;
      }
    }),
  );
  await Promise.race([c.delivered(), sleep(Math.max(0, deadline - performance.now()))]);
  return { latency: c.takeLatencies(), errors: 0, firstError: undefined, sent };
}

const go = (run: string, messages: number, deadline: number) =>
  client.kind === "outbox"
    ? outbox(client, run, messages, deadline)
    : direct(client, run, messages, deadline);

await go(`${args.run}w`, args.warmup ?? 1_000, performance.now() + args.maxSeconds * 1000);
// BENCH_CPU_PROFILE=<file>: a V8 CPU profile of the measured run alone (not the start-up and the
// warm-up, which --cpu-prof would include), to open in Chrome's DevTools; one per client and run,
// `<file>` with the client's name and the run's id before its extension.
const profileFile = process.env.BENCH_CPU_PROFILE?.replace(
  /(\.cpuprofile)?$/,
  `.${args.client}.${args.run}$1`,
);
const inspector = profileFile ? new Session() : undefined;
if (inspector) {
  inspector.connect();
  await inspector.post("Profiler.enable");
  await inspector.post("Profiler.start");
}
const cpu = process.cpuUsage();
const start = performance.now();
const deadline = start + args.maxSeconds * 1000;
const { latency, errors, firstError, sent } = await go(args.run, args.messages, deadline);
const elapsed = performance.now() - start;
const used = process.cpuUsage(cpu);
if (inspector) {
  const { profile } = await inspector.post("Profiler.stop");
  writeFileSync(profileFile!, JSON.stringify(profile));
  inspector.disconnect();
}
const timedOut = performance.now() >= deadline;
const result: ClientResult = {
  ops_per_s: Math.round((latency.length / elapsed) * 1000),
  p50_ms: round(percentile(latency, 50)),
  p99_ms: round(percentile(latency, 99)),
  peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  cpu_us_per_msg: round((used.user + used.system) / Math.max(1, sent), 1),
  attempted: sent,
  errors,
  ...(firstError === undefined ? {} : { first_error: firstError }),
  timed_out: timedOut,
};
await client.close();
process.stdout.write(`${JSON.stringify(result)}\n`);
// A peer may leave timers or sockets behind (the bridge's caches); the result is out.
process.exit(0);
