import { pino } from "pino";
import { z } from "zod";
import { PluginHost } from "../../../src/plugins/PluginHost.ts";
import { definePlugin } from "../../../src/plugins/definePlugin.ts";
import { Outbox } from "../../../src/outbox/Outbox.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import { SqlitePluginData } from "../../../src/store/sqlite/SqlitePluginData.ts";
import type { InboundItem } from "../../../src/inbound/InboundJournal.ts";
import type { MatrixRequest } from "../../../src/matrix/requests.ts";
import { userId } from "../../../src/ids.ts";

const BOT = "@courier:example.org";

function setup(options: { handlerTimeoutMs?: number } = {}) {
  const sent: MatrixRequest[] = [];
  const joins: Array<[string, string]> = [];
  const outbox = new Outbox({
    store: new SqliteOutboxStore({ path: ":memory:" }),
    transport: { send: async (req) => (sent.push(req), { event_id: `$e${sent.length}` }) },
    appserviceId: "test",
    botUserId: userId(BOT),
    rate: { perSecond: 1e6, burst: 1e6 },
  });
  const host = new PluginHost({
    outbox,
    data: new SqlitePluginData({ path: ":memory:" }),
    logger: pino({ level: "silent" }),
    botUserId: BOT,
    isOwnUser: (id) => id === BOT || id.startsWith("@courier_"),
    intent: (user) => ({
      userId: user,
      ensureRegistered: async () => {},
      join: async (room) => void joins.push([room, user]),
      setDisplayName: async () => {},
      setAvatarUrl: async () => {},
      createRoom: async () => "!new:test",
      invite: async () => {},
      leave: async () => {},
      getState: async () => undefined,
    }),
    handlerTimeoutMs: options.handlerTimeoutMs ?? 200,
    maxAttempts: 2,
    retryBaseMs: 1,
  });
  return { outbox, host, sent, joins };
}

let seq = 0;
const item = (event: object, kind: InboundItem["kind"] = "event"): InboundItem => ({
  seq: ++seq,
  txnId: "t1",
  kind,
  lane: "room:!r:x",
  key: `item:${seq}`,
  eventId: (event as { event_id?: string }).event_id,
  json: JSON.stringify(event),
  attempts: 0,
});
const message = (body: string, sender = "@alice:example.org", id = `$m${seq}`) =>
  item({
    event_id: id,
    room_id: "!r:x",
    sender,
    type: "m.room.message",
    origin_server_ts: 1,
    content: { msgtype: "m.text", body },
  });

const echo = definePlugin({
  name: "echo",
  config: z.object({ prefix: z.string().default("") }),
  setup(bot) {
    bot.command("echo", (ctx) => ctx.reply(`${bot.config.prefix}${ctx.command.rest}`), {
      usage: "<text>",
      help: "says it back",
    });
  },
});

describe("PluginHost", () => {
  test("a command reaches its plugin, with the plugin's config; the reply goes through the outbox", async () => {
    const { host, outbox, sent } = setup();
    expect(await host.load(echo, { prefix: "> " })).toBe(true);
    await outbox.start();
    expect(await host.dispatch(message("!echo hi there"))).toEqual([]);
    await outbox.onIdle();
    expect(sent).toHaveLength(1);
    expect(JSON.parse(sent[0]!.body!)).toMatchObject({ msgtype: "m.notice", body: "> hi there" });
  });

  test("a replayed event sends nothing new (same cause, same txnIds)", async () => {
    const { host, outbox, sent } = setup();
    await host.load(echo, {});
    await outbox.start();
    const ev = message("!echo once", "@alice:example.org", "$fixed");
    await host.dispatch(ev);
    await host.dispatch({ ...ev, seq: 999 });
    await outbox.onIdle();
    expect(sent).toHaveLength(1);
  });

  test("a plugin with a bad config is disabled; the others load", async () => {
    const { host } = setup();
    expect(await host.load(echo, { prefix: 42 })).toBe(false);
    const other = definePlugin({ name: "other", setup() {} });
    expect(await host.load(other, {})).toBe(true);
    expect(host.status()).toEqual([
      { name: "echo", status: "failed", error: expect.stringContaining("plugins.echo.config.prefix") },
      { name: "other", status: "running" },
    ]);
  });

  test("a plugin that throws on every event and one that never returns do not stop the others", async () => {
    const { host, outbox, sent } = setup({ handlerTimeoutMs: 50 });
    let hangs = 0;
    await host.load(
      definePlugin({
        name: "thrower",
        setup: (bot) =>
          bot.on("m.room.message", () => {
            throw new Error("boom");
          }),
      }),
      {},
    );
    await host.load(
      definePlugin({
        name: "hanger",
        setup: (bot) =>
          bot.on("m.room.message", (ctx) => {
            hangs++;
            return new Promise((r) => ctx.signal.addEventListener("abort", r));
          }),
      }),
      {},
    );
    await host.load(echo, {});
    await outbox.start();
    const failures = await host.dispatch(message("!echo still here"));
    await outbox.onIdle();
    expect(failures).toEqual([
      expect.stringMatching(/^thrower .*boom/),
      expect.stringMatching(/^hanger .*timed out/),
    ]);
    expect(hangs).toBe(2);
    expect(sent.map((r) => JSON.parse(r.body!).body)).toEqual(["still here"]);
  });

  test("own users' events are not shown to plugins; invites of our users are accepted", async () => {
    const { host, joins } = setup();
    const seen: string[] = [];
    await host.load(
      definePlugin({ name: "spy", setup: (bot) => bot.on({}, (ctx) => void seen.push(ctx.sender)) }),
      {},
    );
    await host.dispatch(message("hello", BOT));
    await host.dispatch(message("hello", "@courier_ghost:example.org"));
    await host.dispatch(message("hello", "@bob:example.org"));
    await host.dispatch(
      item({
        event_id: "$inv",
        room_id: "!r:x",
        sender: "@bob:example.org",
        type: "m.room.member",
        state_key: BOT,
        origin_server_ts: 1,
        content: { membership: "invite" },
      }),
    );
    expect(seen).toEqual(["@bob:example.org", "@bob:example.org"]);
    expect(joins).toEqual([["!r:x", BOT]]);
  });

  test("filters by type, sender, msgtype and membership", async () => {
    const { host } = setup();
    const seen: string[] = [];
    await host.load(
      definePlugin({
        name: "filters",
        setup(bot) {
          // A RegExp sender may match the same events as the others: each needs an id.
          bot.on({ type: "m.room.message", msgtype: "m.emote" }, () => void seen.push("emote"), {
            id: "emote",
          });
          bot.on({ sender: /^@bob:/ }, () => void seen.push("bob"), { id: "bob" });
          bot.on({ type: "m.room.member", membership: "join" }, () => void seen.push("join"), { id: "join" });
        },
      }),
      {},
    );
    await host.dispatch(
      item({
        event_id: "$1",
        room_id: "!r:x",
        sender: "@bob:x",
        type: "m.room.message",
        origin_server_ts: 1,
        content: { msgtype: "m.emote", body: "x" },
      }),
    );
    await host.dispatch(
      item({
        event_id: "$2",
        room_id: "!r:x",
        sender: "@eve:x",
        type: "m.room.member",
        state_key: "@eve:x",
        origin_server_ts: 1,
        content: { membership: "join" },
      }),
    );
    expect(seen).toEqual(["emote", "bob", "join"]);
  });

  test("to-device handlers get the message and answer as the recipient; `help` lists commands", async () => {
    const { host, outbox, sent } = setup();
    await host.load(
      definePlugin({
        name: "pinger",
        setup: (bot) =>
          bot.onToDevice<{ device_id: string }>("m.courier.ping", (ctx) =>
            ctx.sendToDevice(
              ctx.sender,
              ctx.event.content.device_id,
              "m.courier.pong",
              {},
              { as: ctx.event.to_user_id },
            ),
          ),
      }),
      {},
    );
    await host.load(echo, {});
    await outbox.start();
    await host.dispatch(
      item(
        {
          type: "m.courier.ping",
          sender: "@alice:x",
          to_user_id: "@courier_g:x",
          to_device_id: "D",
          content: { device_id: "ALICEDEV" },
        },
        "toDevice",
      ),
    );
    await host.dispatch(message("!help"));
    await outbox.onIdle();
    expect(sent[0]!.path).toMatch(
      /^\/_matrix\/client\/v3\/sendToDevice\/m\.courier\.pong\/\S+\?user_id=%40courier_g%3Ax$/,
    );
    expect(JSON.parse(sent[0]!.body!)).toEqual({
      messages: { "@alice:x": { ALICEDEV: { "org.matrix.msgid": expect.any(String) } } },
    });
    expect(JSON.parse(sent[1]!.body!).body).toContain("!echo <text>: says it back");
  });
});
