// A whole Courier (config, SQLite store, outbox, plugins, appservice listener with the operator
// dashboard) against the in-process fake homeserver: for the dashboard's API and browser tests
// and the screenshot script. Its log lines are kept, so tests can check no secret reached them.
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { Writable } from "node:stream";
import { configSchema } from "../../src/config/schema.ts";
import type { Registration } from "../../src/config/registration.ts";
import { roomId } from "../../src/ids.ts";
import { createLogger } from "../../src/logging/createLogger.ts";
import type { Enqueued } from "../../src/outbox/types.ts";
import type { ProgressObserver } from "../../src/outbox/progress.ts";
import type { PluginDefinition } from "../../src/plugins/definePlugin.ts";
import type { Courier, CourierOptions } from "../../src/runtime/Courier.ts";
import { createCourier } from "../../src/runtime/createCourier.ts";
import { FakeHomeserver } from "./FakeHomeserver.ts";

export interface DashboardStackOptions {
  /** The admin token; null leaves `admin.token` unset (dashboard off). @default a random token */
  readonly adminToken?: string | null;
  /** Plugins by name, loaded in this order with these configs. @default none */
  readonly plugins?: ReadonlyArray<{ definition: PluginDefinition; config?: Record<string, unknown> }>;
  /** Extra plugin entries resolved by name (the shipped plugins). @default none */
  readonly shippedPlugins?: ReadonlyArray<{ name: string; config?: Record<string, unknown> }>;
  /** The homeserver's server name. @default "fake.test" */
  readonly serverName?: string;
  /** More config sections, e.g. `{ metrics: { token } }`; `appservice` keys are merged into ours. @default none */
  readonly config?: Record<string, unknown>;
  /** Store file. @default ":memory:" */
  readonly storePath?: string;
  /**
   * A homeserver several stacks share (instances of one appservice): their tokens, and the
   * homeserver, which the stack neither points at itself nor stops. @default one of its own
   */
  readonly sharedHomeserver?: { hs: FakeHomeserver; asToken: string; hsToken: string };
  /** Reports long outbox tasks. @default log lines */
  readonly progress?: (task: string) => ProgressObserver;
  /** The dashboard's chat page. @default none */
  readonly chat?: CourierOptions["chat"];
}

export interface DashboardStack {
  readonly hs: FakeHomeserver;
  readonly courier: Courier;
  /** The appservice listener, e.g. http://127.0.0.1:41234 */
  readonly url: string;
  readonly adminToken: string | undefined;
  readonly asToken: string;
  readonly hsToken: string;
  /** Every log line so far, as written. */
  logs(): string;
  /** Journals one m.text message to `room` from the bot, under its own cause. */
  say(room: string, body: string): Promise<Enqueued>;
  stop(): Promise<void>;
}

let causes = 0;

export async function startDashboardStack(options: DashboardStackOptions = {}): Promise<DashboardStack> {
  const adminToken =
    options.adminToken === null
      ? undefined
      : (options.adminToken ?? `adm_${randomBytes(24).toString("hex")}`);
  const shared = options.sharedHomeserver;
  const asToken = shared?.asToken ?? `as_${randomBytes(16).toString("hex")}`;
  const hsToken = shared?.hsToken ?? `hs_${randomBytes(16).toString("hex")}`;
  const serverName = options.serverName ?? "fake.test";
  const port = await findFreePort();
  const url = `http://127.0.0.1:${port}`;
  const hs =
    shared?.hs ??
    (await FakeHomeserver.start({
      asToken,
      serverName,
      appservice: { url, hsToken, id: "courier" },
    }));
  const registration: Registration = {
    id: "courier",
    url,
    asToken,
    hsToken,
    senderLocalpart: "bot",
    namespaces: {
      users: [{ regex: `@bot_.*:${serverName.replaceAll(".", "\\.")}`, exclusive: true }],
      aliases: [],
      rooms: [],
    },
    rateLimited: false,
    receiveEphemeral: true,
  };
  const plugins = options.plugins ?? [];
  const { appservice: moreAppservice, ...moreConfig } = options.config ?? {};
  const config = configSchema.parse({
    homeserver: { url: hs.url, serverName },
    appservice: {
      id: "courier",
      bind: { host: "127.0.0.1", port },
      url,
      senderLocalpart: "bot",
      ...(moreAppservice as Record<string, unknown> | undefined),
    },
    store: { path: options.storePath ?? ":memory:" },
    outbox: { rate: { perSecond: 1000, burst: 1000 }, retry: { baseMs: 50, capMs: 1000 } },
    logging: { level: "debug" },
    admin: adminToken === undefined ? {} : { token: adminToken },
    plugins: [
      ...plugins.map((p) => ({ name: p.definition.name, config: p.config ?? {} })),
      ...(options.shippedPlugins ?? []).map((p) => ({ name: p.name, config: p.config ?? {} })),
    ],
    ...moreConfig,
  });
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString("utf8"));
      callback();
    },
  });
  const courier = createCourier({
    config,
    registration,
    logger: createLogger({ level: "debug", destination }),
    plugins: Object.fromEntries(plugins.map((p) => [p.definition.name, p.definition])),
    ...(options.progress ? { progress: options.progress } : {}),
    ...(options.chat ? { chat: options.chat } : {}),
  });
  try {
    await courier.start();
  } catch (error) {
    if (!shared) await hs.stop();
    throw error;
  }
  return {
    hs,
    courier,
    url,
    adminToken,
    asToken,
    hsToken,
    logs: () => lines.join(""),
    say: (room, body) =>
      courier.outbox.cause(`dashboard-test-${++causes}`).send(roomId(room), { msgtype: "m.text", body }),
    async stop() {
      await courier.stop(2000);
      if (!shared) await hs.stop();
    },
  };
}

// The fake homeserver's ping needs our address before we listen: pick a free port first.
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error("no free port"))));
    });
  });
}
