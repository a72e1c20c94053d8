// The one plugin-test harness: a PluginHost over an Outbox and a plugin store (SQLite in memory),
// wired as Courier wires them, minus config files. Every request the outbox sends is recorded;
// with `homeserver: true` it also goes to the in-process fake homeserver (`hs`). Load plugins on
// `host`, then `dispatch` room events to it directly, or `serve()` the real appservice endpoint
// with the plugins' webhooks mounted and `post` to it.
import { pino } from "pino";
import { request } from "undici";
import { createAppserviceApp, listen, type ListeningAppservice } from "../../src/inbound/AppserviceServer.ts";
import { MatrixClient } from "../../src/matrix/MatrixClient.ts";
import type { MatrixRequest } from "../../src/matrix/requests.ts";
import { Outbox } from "../../src/outbox/Outbox.ts";
import { PluginHost } from "../../src/plugins/PluginHost.ts";
import { SqliteInboundJournal } from "../../src/store/sqlite/SqliteInboundJournal.ts";
import { SqliteOutboxStore } from "../../src/store/sqlite/SqliteOutboxStore.ts";
import { SqlitePluginData } from "../../src/store/sqlite/SqlitePluginData.ts";
import { userId } from "../../src/ids.ts";
import { FakeHomeserver } from "./FakeHomeserver.ts";

/** The bot's user id without a homeserver (with one, it is `hs.botUserId`). */
export const BOT = "@courier:x";
const AS_TOKEN = "as_token_for_plugin_tests";
const HS_TOKEN = "hs_token_for_plugin_tests";

export interface HarnessOptions {
  /** Send to an in-process FakeHomeserver (`hs`) as well as recording. @default false */
  readonly homeserver?: boolean;
  /** @default 2000 */
  readonly handlerTimeoutMs?: number;
  /** What `intent(…).getState` reads. @default no state */
  readonly state?: (roomId: string, eventType: string) => Record<string, unknown> | undefined;
}

export interface PluginHarness {
  readonly host: PluginHost;
  readonly outbox: Outbox;
  /** Every request the outbox has sent, in order. */
  readonly sent: MatrixRequest[];
  /** The plugins' stores (`data.forPlugin(name)` is what the plugin sees as `bot.store`). */
  readonly data: SqlitePluginData;
  /** The bot's user id: `BOT`, or the fake homeserver's bot. */
  readonly botUserId: string;
  /** Dispatches a room event to the host (fields beyond the defaults come from `event`). */
  dispatch(event: Record<string, unknown>): Promise<string[]>;
  /** The `body` of everything sent so far, once the outbox is idle. */
  bodies(): Promise<string[]>;
  /**
   * Starts the host (start hooks, schedules) and the appservice endpoint, with the webhooks of the
   * plugins loaded so far mounted under `/plugins/<name>/`. Resolves with its base URL.
   */
  serve(): Promise<string>;
  /** A request to the endpoint `serve()` started; the JSON answer (`{}` when empty) and status. */
  post(
    path: string,
    body: string | Buffer,
    headers?: Record<string, string>,
    method?: "POST" | "GET" | "PUT",
  ): Promise<{ status: number; json: Record<string, unknown> }>;
  /** Stops the host and the outbox, and whatever `serve()` and `homeserver` started. */
  stop(): Promise<void>;
}

export async function pluginHarness(
  options: HarnessOptions & { homeserver: true },
): Promise<PluginHarness & { readonly hs: FakeHomeserver }>;
export async function pluginHarness(options?: HarnessOptions): Promise<PluginHarness>;
export async function pluginHarness(
  options: HarnessOptions = {},
): Promise<PluginHarness & { readonly hs: FakeHomeserver | undefined }> {
  const logger = pino({ level: "silent" });
  const hs = options.homeserver ? await FakeHomeserver.start({ asToken: AS_TOKEN }) : undefined;
  const client = hs
    ? new MatrixClient({ homeserverUrl: hs.url, accessToken: AS_TOKEN, serverName: hs.serverName })
    : undefined;
  const botUserId = hs?.botUserId ?? BOT;
  const sent: MatrixRequest[] = [];
  const data = new SqlitePluginData({ path: ":memory:" });
  const outbox = new Outbox({
    store: new SqliteOutboxStore({ path: ":memory:" }),
    transport: {
      send: async (req, sendOptions) => {
        sent.push(req);
        return client ? client.send(req, sendOptions) : { event_id: `$sent${sent.length}` };
      },
    },
    appserviceId: "plugins",
    botUserId: userId(botUserId),
    rate: { perSecond: 1e6, burst: 1e6 },
  });
  const host = new PluginHost({
    outbox,
    logger,
    botUserId,
    isOwnUser: (id) => id === botUserId,
    intent: (user) => ({
      userId: user,
      ensureRegistered: async () => {},
      join: async () => {},
      setDisplayName: async () => {},
      setAvatarUrl: async () => {},
      createRoom: async () => "!new:test",
      invite: async () => {},
      leave: async () => {},
      getState: async (room, type) => options.state?.(room, type),
    }),
    data,
    handlerTimeoutMs: options.handlerTimeoutMs ?? 2000,
  });
  await outbox.start();

  let served: { listening: ListeningAppservice; journal: SqliteInboundJournal; url: string } | undefined;
  let seq = 0;
  return {
    hs,
    host,
    outbox,
    sent,
    data,
    botUserId,
    dispatch(event) {
      seq++;
      const full = { event_id: `$${seq}`, room_id: "!r:x", sender: "@ann:x", origin_server_ts: 1, ...event };
      return host.dispatch({
        seq,
        txnId: "t",
        kind: "event",
        lane: `room:${String(full.room_id)}`,
        key: `event:${full.event_id}`,
        eventId: full.event_id,
        attempts: 0,
        json: JSON.stringify(full),
      });
    },
    bodies: async () => (await outbox.onIdle(), sent.map((r) => JSON.parse(r.body!).body as string)),
    async serve() {
      if (served) throw new Error("serve() was called already");
      const journal = new SqliteInboundJournal({ path: ":memory:" });
      const app = createAppserviceApp({
        hsToken: HS_TOKEN,
        journal,
        logger,
        routes: (a) => host.mountWebhooks(a),
      });
      await host.start();
      const listening = await listen(app, { port: 0 });
      served = { listening, journal, url: `http://127.0.0.1:${listening.port}` };
      return served.url;
    },
    async post(path, body, headers = {}, method = "POST") {
      if (!served) throw new Error("post() needs serve() first");
      const res = await request(`${served.url}${path}`, {
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
      await served?.listening.close(1000);
      await client?.close();
      await served?.journal.close();
      await hs?.stop();
    },
  };
}
