// The `courier` bin (bin/courier.js) as npm links it: runs from a checkout with nothing built, and
// on a Node older than `engines` says so in one line instead of crashing on node:sqlite.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const BIN = fileURLToPath(new URL("../../bin/courier.js", import.meta.url));
const PACKAGE = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  bin: Record<string, string>;
  engines: { node: string };
};

/** Runs the bin with `process.versions.node` made to read `nodeVersion` (a preload), when given. */
async function runBin(args: string[], nodeVersion?: string) {
  const preload =
    nodeVersion === undefined
      ? []
      : [
          "--import",
          `data:text/javascript,Object.defineProperty(process.versions,"node",{value:"${nodeVersion}"})`,
        ];
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...preload, BIN, ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test("package.json's bin is this file", () => {
  expect(PACKAGE.bin.courier).toBe("./bin/courier.js");
});

test("runs the CLI from the sources, nothing built", async () => {
  const result = await runBin(["--help"]);
  expect(result.code).toBe(0);
  expect(result.stdout).toContain("Usage: courier [options] [command]");
}, 30_000);

test.each(["20.19.2", "22.5.1", "22.15.0"])(
  "on Node %s: one line naming the Node found, the one needed and how to get it; exit 1",
  async (version) => {
    const result = await runBin(["--help"], version);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    const lines = result.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`Node.js ${version} (${process.execPath})`);
    expect(lines[0]).toContain(`needs Node.js ${PACKAGE.engines.node}`);
    expect(lines[0]).toContain("npx courier");
  },
  30_000,
);

test("a Node that meets engines runs", async () => {
  const minimum = /(\d+\.\d+)/.exec(PACKAGE.engines.node)![1]!;
  const result = await runBin(["--help"], `${minimum}.0`);
  expect(result.code).toBe(0);
}, 30_000);
