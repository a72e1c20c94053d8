// Shared pieces of the benchmarks: the fake homeserver in its own process, percentiles, output.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export interface FakeHomeserverProcess {
  readonly url: string;
  readonly child: ChildProcess;
  control(path: string, body?: object): Promise<unknown>;
  stop(): Promise<void>;
}

const MAIN = fileURLToPath(new URL("../test/support/fakeHomeserverMain.ts", import.meta.url));

/** Starts the fake homeserver in another process, so the client's CPU is measured alone. */
export async function startFakeHomeserver(
  asToken: string,
  { record = false }: { record?: boolean } = {},
): Promise<FakeHomeserverProcess> {
  const args = [MAIN, "--as-token", asToken, ...(record ? [] : ["--no-record"])];
  const child = spawn(process.execPath, args, {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`fake homeserver exited with ${code}`)));
    lines.once("line", (line) => resolve((JSON.parse(line) as { url: string }).url));
  });
  return {
    url,
    child,
    async control(path, body) {
      const res = await fetch(`${url}/_fake/${path}`, {
        method: body ? "POST" : "GET",
        body: body ? JSON.stringify(body) : null,
      });
      return res.json();
    },
    async stop() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** The p-th percentile (0–100) of a sample, nearest-rank. */
export function percentile(sample: number[], p: number): number {
  if (sample.length === 0) return NaN;
  const sorted = Float64Array.from(sample).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export const median = (xs: number[]) => percentile(xs, 50);
export const rssMb = () => Math.round((process.memoryUsage.rss() / 2 ** 20) * 10) / 10;
export const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

/** One result line, as DEVELOPERS.md asks. */
export function report(result: {
  name: string;
  ops_per_s: number;
  p50_ms: number;
  p99_ms: number;
  rss_mb: number;
  baseline: object | null;
  [extra: string]: unknown;
}): void {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
