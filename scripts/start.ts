// `npm start`. With a config.yaml: runs the framework on it (`courier start`). Without one: the
// development setup, nothing to configure: a local Synapse (installed into .cache on first use)
// with the committed development registration, the framework with the shipped plugins, and a
// test user whose credentials are printed so a person can log in with any Matrix client.
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { configSchema } from "../src/config/schema.ts";
import { loadRegistration } from "../src/config/registration.ts";
import { createCourier } from "../src/runtime/createCourier.ts";
import { runStart, untilSignal } from "../src/cli/commands.ts";
import { LocalSynapse, ensureSynapseInstalled } from "./synapse/LocalSynapse.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CONFIG = path.join(ROOT, "config.yaml");
const DEV = path.join(ROOT, ".cache", "dev");
const USER = { localpart: "alice", password: "courier-dev-password" };
const say = (line: string) => process.stdout.write(`${line}\n`);

if (existsSync(CONFIG)) {
  await runStart(CONFIG);
  process.exit(0);
}

const registrationPath = path.join(ROOT, "registration.yaml");
const registration = loadRegistration(registrationPath);
const bind = new URL(registration.url);
say("no config.yaml: starting the development setup (a local Synapse and the shipped plugins)");
await ensureSynapseInstalled((line) => say(line));
// The usual homeserver port when it is free, so a client set up once keeps working across runs.
const port = (await isFree(8008)) ? 8008 : undefined;
const synapse = await LocalSynapse.start({
  dataDir: path.join(DEV, "synapse"),
  registrationFiles: [registrationPath],
  ...(port ? { port } : {}),
});
const config = configSchema.parse({
  homeserver: { url: synapse.baseUrl, serverName: synapse.serverName },
  appservice: {
    id: registration.id,
    registration: registrationPath,
    bind: { host: bind.hostname, port: Number(bind.port) },
    url: registration.url,
    senderLocalpart: registration.senderLocalpart,
    namespaces: registration.namespaces,
  },
  store: { path: path.join(DEV, "courier.sqlite") },
  logging: { level: "info" },
  plugins: [{ name: "echo" }, { name: "ping" }, { name: "remind" }],
});
const courier = createCourier({ config, registration });
try {
  await courier.start();
} catch (error) {
  await synapse.stop();
  throw error;
}
let userId = `@${USER.localpart}:${synapse.serverName}`;
try {
  userId = (await synapse.registerUser(USER.localpart, USER.password)).userId;
} catch {
  // Registered by an earlier run: same data folder, same password.
}
say("");
say("matrix-courier is running.");
say(`  homeserver:  ${synapse.baseUrl}   (server name ${synapse.serverName})`);
say(`  log in as:   ${userId}   password: ${USER.password}`);
say(`  the bot:     ${courier.botUserId}`);
say(
  `  try it:      create a room, invite ${courier.botUserId}, then say "!echo hello", "!remind 1m stretch" or "!help"`,
);
say("  stop with Ctrl-C (state is kept in .cache/dev)");
say("");
await untilSignal({
  stop: async () => {
    await courier.stop();
    await synapse.stop();
  },
});

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
      .once("error", () => resolve(false))
      .listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}
