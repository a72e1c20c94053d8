// The README's commands work as written: every npm script its shell blocks run exists, every
// `courier …` command it names (in blocks or in the text) is one the CLI has (its --help is that
// command's, run offline through the bin), anything else is a known system tool, and its copy of what
// `npm start` prints is what scripts/dev/describeDevSetup.ts prints.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describeDevSetup } from "../../../scripts/dev/describeDevSetup.ts";

const README = readFileSync(new URL("../../../README.md", import.meta.url), "utf8");
const SCRIPTS = (
  JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
    scripts: Record<string, string>;
  }
).scripts;
const BIN = fileURLToPath(new URL("../../../bin/courier.js", import.meta.url));
/** Not ours: what the README may tell a reader to run besides npm and courier. */
const SYSTEM_TOOLS = new Set(["export", "kill", "sudo", "apt-get", "openssl"]);

/** The commands of the README's sh blocks, one per `&&`-separated part, comments cut. */
function shellCommands(): string[][] {
  const blocks = [...README.matchAll(/^ *```sh\n([\s\S]*?)^ *```/gm)].map((m) => m[1]!);
  return blocks
    .flatMap((block) => block.split("\n"))
    .map((line) => line.replace(/#.*$/, "").trim())
    .filter((line) => line !== "")
    .flatMap((line) => line.split("&&").map((part) => part.trim().split(/\s+/)));
}

/** `courier` subcommands: the words after `courier` up to the first option or placeholder. */
function courierCommand(words: readonly string[]): string[] {
  const rest: string[] = [];
  for (const word of words) {
    if (/^[-<[`]/.test(word) || !/^[a-z]+$/.test(word)) break;
    rest.push(word);
  }
  return rest;
}

/** Whether the CLI has this command: its --help (exit 0) is the help of exactly that command. */
const exists = async (args: string[]) => {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [BIN, ...args, "--help"]);
    // `Usage: courier inbound list|ls [options]`: an alias follows the name after a bar.
    const usage = `Usage: ${["courier", ...args].join(" ")}`;
    return stdout.startsWith(`${usage} `) || stdout.startsWith(`${usage}|`);
  } catch {
    return false;
  }
};

test("every command in the README's shell blocks exists", async () => {
  const commands = shellCommands();
  expect(commands.length).toBeGreaterThan(5);
  const courier: string[][] = [];
  for (const [tool, ...args] of commands) {
    if (tool === "npm") {
      const script = args[0] === "run" ? args[1] : args[0];
      if (script === "ci") continue;
      expect({ script, exists: script !== undefined && script in SCRIPTS }).toEqual({ script, exists: true });
    } else if (tool === "npx") {
      expect(args[0]).toBe("courier");
      courier.push(courierCommand(args.slice(1)));
    } else {
      expect({ tool, known: SYSTEM_TOOLS.has(tool!) }).toEqual({ tool, known: true });
    }
  }
  for (const args of courier) expect({ args, exists: await exists(args) }).toEqual({ args, exists: true });
}, 60_000);

test("every `courier …` command named in the README's text exists", async () => {
  const named = new Map<string, string[]>();
  for (const match of README.matchAll(/`(?:npx )?courier ([^`]+)`/g)) {
    const args = courierCommand(match[1]!.split(/\s+/));
    if (args.length > 0) named.set(args.join(" "), args);
  }
  expect(named.size).toBeGreaterThan(5);
  const results = await Promise.all(
    [...named.values()].map(async (args) => ({ args, exists: await exists(args) })),
  );
  for (const result of results) expect(result).toEqual({ args: result.args, exists: true });
}, 60_000);

test("the README shows what npm start prints", () => {
  const printed = describeDevSetup({
    homeserverUrl: "http://127.0.0.1:8008",
    serverName: "localhost",
    userId: "@alice:localhost",
    password: "courier-dev-password",
    botUserId: "@courier:localhost",
    dashboardUrl: "http://127.0.0.1:9000/admin/#token=…",
    configPath: "…/.cache/dev/config.yaml",
    pid: "…",
    stateDir: ".cache/dev",
  });
  expect(README).toContain(["```", ...printed, "```"].join("\n"));
});

test("the README names every requirement", () => {
  const quickStart = README.slice(README.indexOf("## Quick start"), README.indexOf("## Running it"));
  const engines = (
    JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
      engines: { node: string };
    }
  ).engines.node;
  expect(quickStart).toContain(`Node.js ${engines.replace(">=", "≥ ")}`);
  expect(quickStart).toContain("Python ≥ 3.10");
  expect(quickStart).toContain("Chromium");
  expect(quickStart).toMatch(/To stop it: Ctrl-C/);
});
