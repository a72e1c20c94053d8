// `npm start`. With a config.yaml: runs the framework on it (`courier start`). Without one: the
// development setup (scripts/dev/startDevSetup.ts), nothing to configure, and prints how to use
// it: a Matrix account, the dashboard (with its chat page) and the CLI.
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CourierError } from "../src/errors.ts";
import { runStart, untilSignal } from "../src/cli/commands.ts";
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
  say("matrix-courier is running.");
  say(`  homeserver:  ${synapse.baseUrl}   (server name ${synapse.serverName})`);
  say(`  log in as:   ${dev.user.userId}   password: ${dev.user.password}`);
  say(`  the bot:     ${courier.botUserId}`);
  say(`  dashboard:   ${dev.dashboardUrl}`);
  say(`  try it:      "Chat with the bot" in the dashboard, or in any Matrix client create a room,`);
  say(`               invite ${courier.botUserId}, then say "!echo hello", "!remind 1m stretch" or "!help"`);
  say(
    `  the CLI:     export COURIER_CONFIG=${dev.configPath}   then: npx courier doctor, npx courier outbox stats`,
  );
  say(`  stop with:   Ctrl-C, or kill ${process.pid} (state is kept in .cache/dev)`);
  say("");
  await untilSignal({ stop: () => dev.stop() });
} catch (error) {
  // A bad COURIER_* override or a broken Synapse: the message says what, a stack would hide it.
  if (!(error instanceof CourierError)) throw error;
  process.stderr.write(`courier: ${error.message}\n`);
  process.exit(error.code === "COURIER_CONFIG" ? 2 : 1);
}
