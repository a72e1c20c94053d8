// `npm run bench`: each benchmark in its own process, one after the other (they would compete
// for the two cores otherwise). Each prints one JSON line per result; the first line says what
// machine ran them. Every line also goes to .cache/bench.jsonl, which `npm run bench:report` reads.
import { execFileSync, spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { fileURLToPath } from "node:url";

const BENCHES = [
  "outboxThroughput.ts",
  "outboxMemory.ts",
  "inboundThroughput.ts",
  "outboundSideBySide.ts",
  "synapseSideBySide.ts",
  "outboxThroughputPg.ts",
  "encryption.ts",
];
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const only = process.argv[2];
mkdirSync(`${ROOT}.cache`, { recursive: true });
// A partial run (`npm run bench -- outbox`) writes a file of its own: the whole run's stays.
const out = createWriteStream(`${ROOT}.cache/${only ? `bench-${only}` : "bench"}.jsonl`);
const emit = (line: string) => {
  process.stdout.write(line);
  out.write(line);
};

let commit = "unknown";
try {
  commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim();
} catch {
  // Not a git checkout: the report says "unknown".
}
emit(
  `${JSON.stringify({
    name: "machine",
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? "unknown",
    memory_gb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    commit,
    started_at: new Date().toISOString(),
    // A shared machine's load when the run began: the figures are ratios for this reason.
    load_average_1m: Math.round(loadavg()[0]! * 100) / 100,
    only: only ?? null,
  })}\n`,
);

let failed = 0;
for (const file of BENCHES.filter((b) => !only || b.includes(only))) {
  const child = spawn(process.execPath, [fileURLToPath(new URL(file, import.meta.url))], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let partial = "";
  child.stdout.on("data", (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split("\n");
    partial = lines.pop()!;
    for (const line of lines) emit(`${line}\n`);
  });
  const code = await new Promise<number | string>((resolve) =>
    child.once("close", (status, signal) => resolve(status ?? signal ?? "?")),
  );
  if (partial) emit(`${partial}\n`);
  if (code !== 0) {
    failed++;
    process.stderr.write(`${file} failed with ${code}\n`);
  }
}
out.end();
process.exit(failed ? 1 : 0);
