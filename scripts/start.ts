// `npm start`. With a config.yaml: runs the framework on it (`courier start`). Without one: the
// development setup (scripts/dev/startDevSetup.ts), nothing to configure, and prints how to use
// it: a Matrix account, the dashboard (with its chat page) and the CLI.
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CourierError } from "../src/errors.ts";
import { runStart, untilSignal } from "../src/cli/commands.ts";
import { describeDevSetup } from "./dev/describeDevSetup.ts";
import { startDevSetup } from "./dev/startDevSetup.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CONFIG = path.join(ROOT, "config.yaml");
const DEV = path.join(ROOT, ".cache", "dev");
const say = (line: string) => process.stdout.write(`${line}\n`);

try {
  if (existsSync(CONFIG)) {
    await runStart(CONFIG);
    process.exit(0);
  }
  say("no config.yaml: starting the development setup (a local Synapse and the shipped plugins)");
  const dev = await startDevSetup({
    dataDir: DEV,
    registrationPath: path.join(ROOT, "registration.yaml"),
    say,
  });
  const { courier, synapse } = dev;
  say("");
  describeDevSetup({
    homeserverUrl: synapse.baseUrl,
    serverName: synapse.serverName,
    userId: dev.user.userId,
    password: dev.user.password,
    botUserId: courier.botUserId,
    dashboardUrl: dev.dashboardUrl,
    configPath: dev.configPath,
    pid: String(process.pid),
    stateDir: path.relative(ROOT, DEV),
  }).forEach((line) => say(line));
  say("");
  await untilSignal({ stop: () => dev.stop() });
} catch (error) {
  // A bad COURIER_* override or a broken Synapse: the message says what, a stack would hide it.
  if (!(error instanceof CourierError)) throw error;
  process.stderr.write(`courier: ${error.message}\n`);
  process.exit(error.code === "COURIER_CONFIG" ? 2 : 1);
}
