// `npm run bench:report [file.jsonl …]`: turns the JSON lines of `npm run bench` (by default
// .cache/bench.jsonl, which it writes; several files: a later file's line replaces an earlier
// one's, so a partial rerun can be laid over a whole run) into docs/benchmarks.md with its tables and SVG charts,
// and the headline table of README.md (between its bench:headline markers). A figure a run did
// not produce is shown as "not measured", never made up.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { format, resolveConfig } from "prettier";
import { barChartSvg } from "./barChart.ts";

type Line = Record<string, unknown> & { name: string };

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const inputs = process.argv.length > 2 ? process.argv.slice(2) : [`${ROOT}.cache/bench.jsonl`];
const input = inputs.join(", ");
// A result repeated (two runs' lines in one file) counts once: the last one.
const identity = (l: Line) =>
  JSON.stringify([
    l.name,
    l.client,
    l.retry,
    l.in_flight,
    l.pending,
    l.name === "machine" ? l.started_at : 0,
  ]);
const lines: Line[] = [
  ...new Map(
    inputs
      .flatMap((file) => readFileSync(file, "utf8").split("\n"))
      .filter((l) => l.trim().startsWith("{"))
      .map((l) => JSON.parse(l) as Line)
      .map((l) => [identity(l), l] as const),
  ).values(),
];

const all = (name: string) => lines.filter((l) => l.name === name);
const one = (name: string, where: Record<string, unknown> = {}) =>
  lines.findLast((l) => l.name === name && Object.entries(where).every(([k, v]) => l[k] === v));
const num = (line: Line | undefined, key: string): number | undefined => {
  const value = line?.[key];
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
};
const sub = (line: Line | undefined, key: string) => (line?.[key] ?? undefined) as Line | undefined;
const fmt = (value: number | undefined, digits = 0) =>
  value === undefined
    ? "not measured"
    : value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const ratio = (value: number | undefined) => (value === undefined ? "not measured" : `${value.toFixed(2)}×`);
const table = (head: string[], rows: string[][]) =>
  [
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
const verdict = (ok: boolean | undefined) => (ok === undefined ? "not measured" : ok ? "met" : "**not met**");

const CLIENT_ORDER = ["matrix-courier", "matrix-bot-sdk", "matrix-appservice-bridge", "undici-request-loop"];
const CLIENT_LABEL: Record<string, string> = {
  "matrix-courier": "matrix-courier (outbox)",
  "matrix-bot-sdk": "matrix-bot-sdk `MatrixClient.sendMessage`",
  "matrix-appservice-bridge": "matrix-appservice-bridge `Intent.sendMessage`",
  "undici-request-loop": "undici `request()` loop (no framework)",
};
const byClient = (rows: Line[]) =>
  [...rows].sort((a, b) => CLIENT_ORDER.indexOf(String(a.client)) - CLIENT_ORDER.indexOf(String(b.client)));

const machine = one("machine");
const instant = byClient(all("outbound-instant"));
const delayed = byClient(all("outbound-5ms"));
const faults = byClient(all("outbound-faults"));
const courierInstant = instant.find((l) => l.client === "matrix-courier");
const undiciInstant = instant.find((l) => l.client === "undici-request-loop");
const botSdkInstant = instant.find((l) => l.client === "matrix-bot-sdk");
const courierFaults = faults.find((l) => l.client === "matrix-courier");

const outboundRows = (rows: Line[]) =>
  rows.map((l) => [
    CLIENT_LABEL[String(l.client)] ?? String(l.client),
    fmt(num(l, "concurrency")),
    fmt(num(l, "ops_per_s")),
    ratio(num(l, "ops_ratio_to_courier")),
    `${fmt(num(l, "p50_ms"), 1)} / ${fmt(num(l, "p99_ms"), 1)}`,
    fmt(num(l, "rss_mb")),
    fmt(num(l, "cpu_us_per_msg"), 1),
    ratio(num(l, "cpu_ratio_to_courier")),
  ]);
const outboundHead = [
  "client",
  "in flight (best)",
  "messages/s",
  "× matrix-courier",
  "p50 / p99 ms",
  "peak RSS MB",
  "client CPU µs/message",
  "CPU × matrix-courier",
];

/**
 * Messages handed to the client that never arrived. A run cut short by its time limit hands over
 * fewer than it meant to: those are "not sent", not lost (older lines have no \`attempted\`).
 */
const lostOf = (l: Line | undefined) =>
  l === undefined || num(l, "arrived") === undefined
    ? undefined
    : Math.max(0, (num(l, "attempted") ?? num(l, "messages") ?? 0) - num(l, "arrived")!);
const notSentOf = (l: Line) => (num(l, "messages") ?? 0) - (num(l, "attempted") ?? num(l, "messages") ?? 0);

const faultRows = faults.map((l) => {
  const messages = num(l, "messages") ?? 0;
  const arrived = num(l, "arrived");
  const notSent = notSentOf(l);
  return [
    CLIENT_LABEL[String(l.client)] ?? String(l.client),
    l.retry === "outbox"
      ? "its own (outbox)"
      : l.retry === "caller"
        ? "the caller retries (5 tries)"
        : "none: error to caller",
    `${fmt(arrived)} of ${fmt(messages)}${notSent > 0 ? ` (${fmt(notSent)} not sent: stopped at its time limit)` : ""}`,
    fmt(lostOf(l)),
    fmt(num(l, "doubled")),
    fmt(num(l, "out_of_order")),
    fmt(num(l, "errors")),
    fmt(num(l, "ops_per_s")),
  ];
});

const inboundRows = all("inbound-side-by-side-acked").map((acked) => {
  const handled = one("inbound-side-by-side-handled", { client: acked.client, in_flight: acked.in_flight });
  return [
    String(acked.client),
    fmt(num(acked, "in_flight")),
    fmt(num(acked, "ops_per_s")),
    fmt(num(handled, "ops_per_s")),
    `${fmt(num(acked, "p50_ms"), 2)} / ${fmt(num(acked, "p99_ms"), 2)}`,
    fmt(num(acked, "rss_mb")),
  ];
});
const inboundRatio = (inFlight: number, kind: "acked" | "handled") =>
  num(
    one(`inbound-side-by-side-${kind}`, { client: "matrix-courier", in_flight: inFlight }),
    "ratio_courier_to_appservice",
  );

const synapse = one("synapse-side-by-side");
const throughput = one("outbox-throughput");
const memory = one("outbox-memory");
const scaling = [...all("outbox-scaling")].sort(
  (a, b) => (num(a, "pending") ?? 0) - (num(b, "pending") ?? 0),
);

const cpuToUndici =
  num(courierInstant, "cpu_us_per_msg") !== undefined && num(undiciInstant, "cpu_us_per_msg") !== undefined
    ? num(courierInstant, "cpu_us_per_msg")! / num(undiciInstant, "cpu_us_per_msg")!
    : undefined;
const throughputCpuRatio =
  num(throughput, "cpu_us_per_msg") !== undefined &&
  num(sub(throughput, "baseline"), "cpu_us_per_msg") !== undefined
    ? num(throughput, "cpu_us_per_msg")! / num(sub(throughput, "baseline"), "cpu_us_per_msg")!
    : undefined;
const overBotSdk = num(botSdkInstant, "ops_ratio_to_courier");
// The frameworks, not the bare loop (which keeps its txnIds across its caller's retries).
const peersLose = faults
  .filter((l) => l.client === "matrix-bot-sdk" || l.client === "matrix-appservice-bridge")
  .every((l) => (lostOf(l) ?? 0) > 0 || (num(l, "doubled") ?? 0) > 0);
const inboundAcked = inboundRatio(1, "acked");
const largest = scaling.at(-1);
const outboxFloor = one("outbox-sqlite-floor");
const inboundFloor = one("inbound-journal-floor");
/** What the SQLite floor alone allows, after a target's figure; nothing when it was not measured. */
const floorNote = (line: Line | undefined, key: string, detail = "") =>
  line ? `; the SQLite floor alone allows at best ${ratio(num(line, key))}${detail}` : "";

const targets = [
  [
    "outbox CPU per message ≤ 1.25× the undici loop's",
    `${ratio(cpuToUndici)} (outbound, at once); ${ratio(throughputCpuRatio)} (outbox-throughput)${floorNote(outboxFloor, "floor_cpu_ratio")}`,
    verdict(cpuToUndici === undefined ? undefined : cpuToUndici <= 1.25),
  ],
  [
    "outbox throughput ≥ 0.8× the undici loop's",
    `${ratio(num(throughput, "ratio"))} (outbox-throughput, median of pairs)${floorNote(outboxFloor, "floor_throughput_ratio")}`,
    verdict(num(throughput, "ratio") === undefined ? undefined : num(throughput, "ratio")! >= 0.8),
  ],
  [
    "≥ 2.5× matrix-bot-sdk's messages/s",
    overBotSdk === undefined ? "not measured" : `${ratio(1 / overBotSdk)} (at once)`,
    verdict(overBotSdk === undefined ? undefined : 1 / overBotSdk >= 2.5),
  ],
  [
    "faults: zero lost, zero doubled, where every peer loses or doubles something",
    courierFaults
      ? `matrix-courier lost ${fmt(lostOf(courierFaults))}, not sent ${fmt(notSentOf(courierFaults))}, doubled ${fmt(num(courierFaults, "doubled"))}, out of order ${fmt(num(courierFaults, "out_of_order"))}`
      : "not measured",
    verdict(
      courierFaults
        ? num(courierFaults, "arrived") === num(courierFaults, "messages") &&
            num(courierFaults, "doubled") === 0 &&
            peersLose
        : undefined,
    ),
  ],
  [
    "inbound acked ≥ 0.5× matrix-appservice's AppService (one transaction in flight)",
    `${ratio(inboundAcked)}${floorNote(inboundFloor, "best_ratio", ` with matrix-courier's journal, ${ratio(num(inboundFloor, "minimal_best_ratio"))} with the fewest statements`)}`,
    verdict(inboundAcked === undefined ? undefined : inboundAcked >= 0.5),
  ],
  [
    "real Synapse ≥ 0.9× the plain PUT loop",
    ratio(num(synapse, "ratio")),
    verdict(num(synapse, "ratio") === undefined ? undefined : num(synapse, "ratio")! >= 0.9),
  ],
  [
    "100k pending: RSS ≤ 200 MB at rest and during the replay",
    `${fmt(num(memory, "rss_mb"))} MB at rest, ${fmt(num(memory, "restart_replay_peak_rss_mb"))} MB peak during the replay`,
    verdict(
      num(memory, "rss_mb") === undefined || num(memory, "restart_replay_peak_rss_mb") === undefined
        ? undefined
        : num(memory, "rss_mb")! <= 200 && num(memory, "restart_replay_peak_rss_mb")! <= 200,
    ),
  ],
  [
    "cost per message flat from 1k to 100k pending",
    largest
      ? `fill ${ratio(num(largest, "fill_cpu_ratio"))}, replay ${ratio(num(largest, "replay_cpu_ratio"))} of the ${fmt(num(scaling[0], "pending"))}-pending cost`
      : "not measured",
    "(read the table)",
  ],
];

// ---- charts --------------------------------------------------------------------------------

const chartDir = `${ROOT}docs/benchmarks`;
mkdirSync(chartDir, { recursive: true });
const scenarioGroups = (key: string) =>
  [
    ["answering at once", instant],
    ["5 ms a request", delayed],
  ]
    .filter(([, rows]) => (rows as Line[]).length > 0)
    .map(([label, rows]) => ({
      label: label as string,
      bars: (rows as Line[]).map((l) => ({ series: String(l.client), value: num(l, key) ?? 0 })),
    }));
writeFileSync(
  `${chartDir}/outbound-messages-per-second.svg`,
  barChartSvg({
    title: "Outbound, 20,000 messages into 100 rooms",
    unit: "messages/s",
    groups: scenarioGroups("ops_per_s"),
  }),
);
writeFileSync(
  `${chartDir}/outbound-cpu-per-message.svg`,
  barChartSvg({
    title: "Outbound, client CPU per message",
    unit: "µs, lower is better",
    groups: scenarioGroups("cpu_us_per_msg"),
  }),
);

// ---- docs/benchmarks.md ----------------------------------------------------------------------

const runs = all("machine");
const machineLine = machine
  ? `${runs.length > 1 ? `${runs.length} runs laid over each other (${runs.map((r) => `commit ${String(r.commit)} started ${String(r.started_at)}, load average ${fmt(num(r, "load_average_1m"), 2)}`).join("; ")}); the last: ` : ""}${fmt(num(machine, "cores"))} cores (${String(machine.cpu)}), ${fmt(num(machine, "memory_gb"))} GB, Node ${String(machine.node)} on ${String(machine.platform)}, commit ${String(machine.commit)}, started ${String(machine.started_at)}, load average ${fmt(num(machine, "load_average_1m"), 2)} at the start`
  : "not recorded (the lines did not come from `npm run bench`)";

const doc = `<!-- Generated by \`npm run bench:report\` from the JSON lines of \`npm run bench\`; edits are overwritten. -->

# Benchmarks

matrix-courier side by side with what people would otherwise pick: matrix-bot-sdk, matrix-appservice-bridge
(with matrix-appservice) and a plain HTTP loop, on the same machine, in the same run. Every
figure below comes from one run of the command under [Reproduce](#reproduce); how each benchmark
works is in [performance.md](performance.md) and in the comments of \`bench/\`.

**Machine**: ${machineLine}.
The machines this project runs on are shared by several sessions: read the ratios (each within
one run, most of them between back-to-back pairs), not the absolute figures.

## Targets

${table(["target", "this run", ""], targets)}

## Outbound: 20,000 messages into 100 rooms

Against the fake homeserver (\`test/support/FakeHomeserver.ts\`) in a process of its own; each
client in a process of its own, so its CPU (\`process.cpuUsage\`, user + system, every thread)
and peak RSS are its alone. Each client ran at ${Object.keys((instant[0]?.sweep as object | undefined) ?? {}).length} concurrencies (${Object.keys((instant[0]?.sweep as object | undefined) ?? {}).join(", ") || "none"} requests in flight) and its best is shown. Latency: from the call (matrix-courier: the enqueue) to the homeserver's answer.
matrix-courier's producers await the commit of their enqueue, one producer per room; the others await each send.

![messages per second](benchmarks/outbound-messages-per-second.svg)

![CPU per message](benchmarks/outbound-cpu-per-message.svg)

### The homeserver answering at once

${instant.length ? table(outboundHead, outboundRows(instant)) : "not measured"}

### The homeserver taking 5 ms a request

${delayed.length ? table(outboundHead, outboundRows(delayed)) : "not measured"}

### With faults

${fmt(num(faults[0], "messages"))} messages, 100 rooms; the homeserver answers 10% of sends 429 (\`retry_after_ms\` ${String(
  (faults[0]?.faults as { retryAfterMs?: number } | undefined)?.retryAfterMs ?? "?",
)}), 2% 500, resets 1% of connections, and loses 1% of answers after storing the message.
Counted on the homeserver's side: a message stored twice is doubled (a retry with a new txnId);
out of order is a message stored after a later message of the same room. The peers ran as their
library leaves them (an error reaches the caller, who gives the message up), and with the caller
retrying a failed send up to 5 times (waiting \`retry_after_ms\` on a 429): the libraries mint a
new txnId for each call, so a retried call whose first answer was lost is stored twice.
matrix-courier retries by itself and honours every 429 for its sender, which is why it is the
slowest here. matrix-appservice-bridge doubles messages even when its caller does not retry:
\`Intent._joinGuard\` (lib/components/intent.js) sends again, after re-joining, on any error that
is not a Matrix error answer, so a reset connection or a lost answer is sent a second time with a
new txnId; a lost answer's message had been stored.

${faults.length ? table(["client", "retries", "arrived", "lost", "doubled", "out of order", "errors thrown at the caller", "messages/s"], faultRows) : "not measured"}

## Inbound: transactions of 100 events

Transactions as Synapse sends them (100 \`m.room.message\` events, ~54 KB), one at a time and 4 at
once, from a client process; matrix-courier journals each transaction before its 200 and
dispatches to a no-op plugin; matrix-appservice's AppService (what matrix-appservice-bridge
listens with) stores nothing and emits each event before its 200, so its handled figure is its
acked one. Pairs alternate; the ratio is the median of the pairs'.

${inboundRows.length ? table(["server", "in flight", "events/s acked", "events/s handled", "p50 / p99 ms acked", "RSS MB"], inboundRows) : "not measured"}

matrix-courier over matrix-appservice: acked ${ratio(inboundRatio(1, "acked"))}, handled ${ratio(
  inboundRatio(1, "handled"),
)} with one transaction in flight; acked ${ratio(inboundRatio(4, "acked"))}, handled ${ratio(inboundRatio(4, "handled"))} with 4.

## A real Synapse

${
  synapse
    ? `${fmt(num(synapse, "messages"))} messages into ${fmt(num(synapse, "rooms"))} rooms of a local Synapse (rate limits off), ${fmt(
        num(synapse, "concurrency"),
      )} in flight, ${fmt(num(synapse, "runs"))} alternating pairs.

${table(
  ["client", "messages/s", "p50 / p99 ms", "client CPU µs/message"],
  [
    [
      "matrix-courier",
      fmt(num(synapse, "ops_per_s")),
      `${fmt(num(synapse, "p50_ms"), 1)} / ${fmt(num(synapse, "p99_ms"), 1)}`,
      fmt(num(synapse, "cpu_us_per_msg"), 1),
    ],
    [
      "undici PUT loop with the as_token",
      fmt(num(sub(synapse, "baseline"), "ops_per_s")),
      `${fmt(num(sub(synapse, "baseline"), "p50_ms"), 1)} / ${fmt(num(sub(synapse, "baseline"), "p99_ms"), 1)}`,
      fmt(num(sub(synapse, "baseline"), "cpu_us_per_msg"), 1),
    ],
  ],
)}

Ratio (median of pairs): ${ratio(num(synapse, "ratio"))}; pairs: ${JSON.stringify(synapse.all_ratios)}.`
    : "not measured (Synapse not installed when the run began; `bash scripts/synapse/install.sh`)"
}

## What SQLite alone costs

The least that journaling adds, measured in the same run (\`bench/sqliteFloor.ts\`): the fewest
SQLite statements a journaled message needs, with the store's settings (WAL, synchronous NORMAL),
and matrix-courier's own store doing the same work, each without the rest of the framework. CPU
per message, median of 3 rounds. Outbound: one INSERT with a unique key and one UPDATE with the
outcome, 64 to a commit, against the undici loop's CPU per message at once. Inbound: one INSERT
per event with its key, a commit per transaction of 100, against matrix-appservice's whole time
per event (one transaction in flight); the commit comes before the 200, so the journal's time adds
to whatever the server does.

${
  outboxFloor || inboundFloor
    ? table(
        [
          "",
          "plain client",
          "fewest statements",
          "matrix-courier's store",
          "best ratio, fewest statements",
          "best ratio, matrix-courier's store",
        ],
        [
          [
            "outbound, CPU µs/message",
            fmt(num(sub(outboxFloor, "baseline"), "cpu_us_per_msg"), 1),
            fmt(num(outboxFloor, "minimal_us_per_msg"), 1),
            fmt(num(outboxFloor, "store_us_per_msg"), 1),
            `CPU ${ratio(num(outboxFloor, "floor_cpu_ratio"))}, messages/s ${ratio(num(outboxFloor, "floor_throughput_ratio"))}`,
            `CPU ${ratio(num(outboxFloor, "store_cpu_ratio"))}`,
          ],
          [
            "inbound, µs/event",
            fmt(num(sub(inboundFloor, "baseline"), "us_per_event"), 1),
            fmt(num(inboundFloor, "minimal_us_per_event"), 1),
            fmt(num(inboundFloor, "journal_us_per_event"), 1),
            `acked ${ratio(num(inboundFloor, "minimal_best_ratio"))}`,
            `acked ${ratio(num(inboundFloor, "best_ratio"))}`,
          ],
        ],
      )
    : "not measured"
}

A "best ratio" is what a framework that journals on node:sqlite could reach if nothing but the
journal cost anything beyond the plain client; the targets of 1.25× CPU, 0.8× messages/s and
0.5× acked sit at or beyond it ([decision 0020](decisions/0020-targets-below-the-sqlite-floor.md)).

## The outbox alone

${
  throughput
    ? table(
        ["figure", "outbox", "undici loop", "ratio"],
        [
          [
            "messages/s (median of pairs)",
            fmt(num(throughput, "ops_per_s")),
            fmt(num(sub(throughput, "baseline"), "ops_per_s")),
            ratio(num(throughput, "ratio")),
          ],
          [
            "CPU µs/message",
            fmt(num(throughput, "cpu_us_per_msg"), 1),
            fmt(num(sub(throughput, "baseline"), "cpu_us_per_msg"), 1),
            ratio(throughputCpuRatio),
          ],
          [
            "enqueue p50 / p99 ms",
            `${fmt(num(throughput, "enqueue_p50_ms"), 2)} / ${fmt(num(throughput, "enqueue_p99_ms"), 2)}`,
            "",
            "",
          ],
        ],
      )
    : "outbox-throughput not measured"
}

### A growing backlog

Messages enqueued while the homeserver is paused, then replayed to the end by a restarted
process. CPU per message of each phase, its ratio to the smallest backlog's, and the RSS sampled
every 50 ms during the replay.

${
  scaling.length
    ? table(
        [
          "pending",
          "fill CPU µs/message",
          "× smallest",
          "replay CPU µs/message",
          "× smallest",
          "replay messages/s",
          "RSS at rest MB",
          "replay peak RSS MB",
        ],
        scaling.map((l) => [
          fmt(num(l, "pending")),
          fmt(num(l, "fill_cpu_us_per_msg"), 1),
          ratio(num(l, "fill_cpu_ratio")),
          fmt(num(l, "replay_cpu_us_per_msg"), 1),
          ratio(num(l, "replay_cpu_ratio")),
          fmt(num(l, "ops_per_s")),
          fmt(num(l, "rss_mb")),
          fmt(num(l, "replay_peak_rss_mb")),
        ]),
      )
    : "not measured"
}

## Reproduce

\`\`\`sh
npm ci
bash scripts/synapse/install.sh   # for the real-Synapse line (optional)
npm run bench                     # ~15 min on 2 cores; installs the peers into bench/peers on first use
npm run bench:report              # this page, its charts, and README.md's headline table
\`\`\`

The peers (matrix-bot-sdk ${"0.8.0"}, matrix-appservice-bridge ${"11.2.0"}, matrix-appservice 3.0.0) are pinned in
\`bench/peers/package.json\` and its lockfile, apart from the project's own dependencies. Their
native crypto package (\`@matrix-org/matrix-sdk-crypto-nodejs\`) is installed without its install
script, which downloads a binary, and is replaced at load by a stub that throws if used: the
benchmarks send unencrypted messages. Knobs: \`BENCH_MESSAGES\`, \`BENCH_CONCURRENCIES\`,
\`BENCH_PARTS\` (instant, 5ms, faults), \`BENCH_IN_FLIGHT\`, \`BENCH_SCALING\`, \`BENCH_RUNS\`,
\`BENCH_MAX_SECONDS\`; \`npm run bench -- <part of a file name>\` runs some of the benchmarks.
`;
// Formatted as \`npm run lint\` checks it.
const prettier = async (text: string, file: string) =>
  format(text, { ...(await resolveConfig(file)), filepath: file });
writeFileSync(`${ROOT}docs/benchmarks.md`, await prettier(doc, `${ROOT}docs/benchmarks.md`));

// ---- README.md's headline ----------------------------------------------------------------------

const headline = instant.length
  ? `${table(
      ["client", "messages/s", "client CPU µs/message", "faults: lost", "doubled", "out of order"],
      instant.map((l) => {
        const asLeft = faults.find(
          (f) => f.client === l.client && (f.retry === "none" || f.retry === "outbox"),
        );
        const retried = faults.find((f) => f.client === l.client && f.retry === "caller");
        const lost = (f: Line | undefined) => fmt(lostOf(f));
        // A peer: as its library leaves it / with the caller retrying.
        const both = (a: string, b: string | undefined) => (b === undefined ? a : `${a} / ${b}`);
        return [
          CLIENT_LABEL[String(l.client)] ?? String(l.client),
          `${fmt(num(l, "ops_per_s"))} (${ratio(num(l, "ops_ratio_to_courier"))})`,
          fmt(num(l, "cpu_us_per_msg"), 1),
          both(lost(asLeft), retried ? lost(retried) : undefined),
          both(fmt(num(asLeft, "doubled")), retried ? fmt(num(retried, "doubled")) : undefined),
          both(fmt(num(asLeft, "out_of_order")), retried ? fmt(num(retried, "out_of_order")) : undefined),
        ];
      }),
    )}

20,000 messages into 100 rooms against a fake homeserver answering at once; faults: 10% 429, 2%
500, 1% connection resets, 1% answers lost after the message was stored (peers as their library
leaves them / with the caller retrying a failed send up to 5 times). Measured on ${machine ? `${fmt(num(machine, "cores"))} shared cores (load average ${runs.map((r) => fmt(num(r, "load_average_1m"), 1)).join(", ")} when ${runs.length > 1 ? "each run" : "the run"} began), Node ${String(machine.node)}` : "an unrecorded machine"}: compare
the ratios, not the absolute figures. All figures, charts and how to reproduce them:
[docs/benchmarks.md](docs/benchmarks.md).`
  : "Not measured yet: `npm run bench && npm run bench:report`.";

const START = "<!-- bench:headline:start (npm run bench:report writes this part) -->";
const END = "<!-- bench:headline:end -->";
const readme = readFileSync(`${ROOT}README.md`, "utf8");
const from = readme.indexOf(START);
const to = readme.indexOf(END);
if (from < 0 || to < from) throw new Error(`README.md has no ${START} … ${END} block`);
writeFileSync(
  `${ROOT}README.md`,
  await prettier(
    `${readme.slice(0, from + START.length)}\n\n${headline}\n\n${readme.slice(to)}`,
    `${ROOT}README.md`,
  ),
);
process.stdout.write(`docs/benchmarks.md, docs/benchmarks/*.svg and README.md written from ${input}\n`);
