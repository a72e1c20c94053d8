// The process the cause-key crash test kills and restarts: a whole Courier (SQLite file, outbox,
// inbound journal, dispatcher, appservice endpoint) against the test's fake homeserver, with one
// plugin, "upgrade", in the version COURIER_TEST_PLUGIN names:
// - "v1": command `ping`, a welcome handler, and the `greet` handler, in that order;
// - "v2": the same handlers reordered, plus a new `seen` handler that reacts to every message.
// On its first run (the marker file does not exist yet) `greet` writes the marker and SIGKILLs
// the process right after its reply is journaled, before the inbound event is marked done.
// Prints "ready" once started; on SIGTERM drains the outbox, stops and prints "stopped".
import { existsSync, writeFileSync } from "node:fs";
import { configSchema } from "../../src/config/schema.ts";
import type { Registration } from "../../src/config/registration.ts";
import { createLogger } from "../../src/logging/createLogger.ts";
import { definePlugin, type Bot, type EventContext } from "../../src/plugins/definePlugin.ts";
import { createCourier } from "../../src/runtime/createCourier.ts";

export interface CauseKeyChildOptions {
  db: string;
  marker: string;
  homeserverUrl: string;
  serverName: string;
  port: number;
  asToken: string;
  hsToken: string;
}

const options = JSON.parse(process.argv[2] ?? "{}") as CauseKeyChildOptions;
const variant = process.env.COURIER_TEST_PLUGIN;

const pong = (ctx: EventContext<unknown>) => ctx.reply("pong");
const welcome = (ctx: EventContext<unknown>) => ctx.reply("welcome");
const greet = async (ctx: EventContext<unknown, { body?: string }>) => {
  await ctx.reply(`hello: ${ctx.event.content.body}`);
  if (!existsSync(options.marker)) {
    writeFileSync(options.marker, `killed after the reply to ${ctx.event.event_id}\n`);
    process.kill(process.pid, "SIGKILL");
  }
};

const versions: Record<string, (bot: Bot<unknown>) => void> = {
  v1(bot) {
    bot.command("ping", pong);
    bot.on({ type: "m.room.member", membership: "join" }, welcome);
    bot.on("m.room.message", greet, { id: "greet" });
  },
  v2(bot) {
    bot.on("m.room.message", (ctx) => ctx.react("👀"), { id: "seen" });
    bot.on("m.room.message", greet, { id: "greet" });
    bot.on({ membership: "join", type: "m.room.member" }, welcome);
    bot.command("ping", pong);
  },
};
const setup = versions[variant ?? ""];
if (!setup) throw new Error(`COURIER_TEST_PLUGIN must be one of ${Object.keys(versions).join(", ")}`);

const url = `http://127.0.0.1:${options.port}`;
const registration: Registration = {
  id: "courier",
  url,
  asToken: options.asToken,
  hsToken: options.hsToken,
  senderLocalpart: "bot",
  namespaces: { users: [], aliases: [], rooms: [] },
  rateLimited: false,
  receiveEphemeral: true,
};
const config = configSchema.parse({
  homeserver: { url: options.homeserverUrl, serverName: options.serverName },
  appservice: { id: "courier", bind: { host: "127.0.0.1", port: options.port }, url, senderLocalpart: "bot" },
  store: { path: options.db },
  outbox: { rate: { perSecond: 1000, burst: 1000 }, retry: { baseMs: 20, capMs: 200 } },
  logging: { level: "warn" },
  plugins: [{ name: "upgrade", config: {} }],
});
const courier = createCourier({
  config,
  registration,
  logger: createLogger({ level: "warn", destination: process.stderr }),
  plugins: { upgrade: definePlugin({ name: "upgrade", setup }) },
});
process.once("SIGTERM", () => {
  void courier.stop(5000, { drain: true }).then(() => {
    process.stdout.write("stopped\n");
    process.exit(0);
  });
});
await courier.start();
const status = courier.host.status();
if (status.some((p) => p.status !== "running"))
  throw new Error(`plugin not loaded: ${JSON.stringify(status)}`);
process.stdout.write("ready\n");
