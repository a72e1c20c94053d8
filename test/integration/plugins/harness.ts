// The real appservice endpoint + PluginHost + Outbox (SQLite in memory) + MatrixClient, against
// the in-process fake homeserver: what Courier wires, minus config files.
import { pino } from "pino";
import { request } from "undici";
import {
  createAppserviceApp,
  listen,
  type ListeningAppservice,
} from "../../../src/inbound/AppserviceServer.ts";
import { MatrixClient } from "../../../src/matrix/MatrixClient.ts";
import { Outbox } from "../../../src/outbox/Outbox.ts";
import { PluginHost } from "../../../src/plugins/PluginHost.ts";
import type { PluginDefinition } from "../../../src/plugins/definePlugin.ts";
import { SqliteInboundJournal } from "../../../src/store/sqlite/SqliteInboundJournal.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import { SqlitePluginData } from "../../../src/store/sqlite/SqlitePluginData.ts";
import { userId } from "../../../src/ids.ts";
import { FakeHomeserver } from "../../support/FakeHomeserver.ts";

const AS_TOKEN = "as_token_for_webhook_tests";
const HS_TOKEN = "hs_token_for_webhook_tests";

export interface Stack {
  readonly hs: FakeHomeserver;
  readonly host: PluginHost;
  readonly outbox: Outbox;
  readonly url: string;
  /** `true` when the plugin loaded. */
  readonly loaded: boolean;
  post(
    path: string,
    body: string | Buffer,
    headers?: Record<string, string>,
    method?: "POST" | "GET" | "PUT",
  ): Promise<{ status: number; json: Record<string, unknown> }>;
  stop(): Promise<void>;
}

export async function startStack(
  plugin: PluginDefinition,
  config: unknown,
  options: { handlerTimeoutMs?: number } = {},
): Promise<Stack> {
  const hs = await FakeHomeserver.start({ asToken: AS_TOKEN });
  const logger = pino({ level: "silent" });
  const client = new MatrixClient({
    homeserverUrl: hs.url,
    accessToken: AS_TOKEN,
    serverName: hs.serverName,
  });
  const outbox = new Outbox({
    store: new SqliteOutboxStore({ path: ":memory:" }),
    transport: client,
    appserviceId: "webhooks",
    botUserId: userId(hs.botUserId),
    rate: { perSecond: 1e6, burst: 1e6 },
  });
  const host = new PluginHost({
    outbox,
    data: new SqlitePluginData({ path: ":memory:" }),
    logger,
    botUserId: hs.botUserId,
    isOwnUser: (id) => id === hs.botUserId,
    intent: (user) => ({
      userId: user,
      ensureRegistered: async () => {},
      join: async () => {},
      setDisplayName: async () => {},
    }),
    handlerTimeoutMs: options.handlerTimeoutMs ?? 2000,
  });
  const loaded = await host.load(plugin, config);
  const journal = new SqliteInboundJournal({ path: ":memory:" });
  const app = createAppserviceApp({
    hsToken: HS_TOKEN,
    journal,
    logger,
    routes: (a) => host.mountWebhooks(a),
  });
  await host.start();
  await outbox.start();
  const listening: ListeningAppservice = await listen(app, { port: 0 });
  const url = `http://127.0.0.1:${listening.port}`;
  return {
    hs,
    host,
    outbox,
    url,
    loaded,
    async post(path, body, headers = {}, method = "POST") {
      const res = await request(`${url}${path}`, {
        method,
        headers: { "content-type": "application/json", ...headers },
        ...(method === "GET" ? {} : { body }),
      });
      const text = await res.body.text();
      return { status: res.statusCode, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
    },
    async stop() {
      await host.stop();
      await outbox.stop(1000);
      await listening.close(1000);
      await client.close();
      await journal.close();
      await hs.stop();
    },
  };
}
