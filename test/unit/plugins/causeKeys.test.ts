// Cause keys survive an upgrade (DESIGN.md, invariant 9): a handler's sends are keyed by its
// stable identity (command name, `id`, filter, to-device/ephemeral type), never by its place among
// the plugin's handlers. A host with the handlers reordered and one added must send the same
// events onto the same txnIds; handlers that could meet the same event must be told apart by ids.
import { pino } from "pino";
import { PluginHost } from "../../../src/plugins/PluginHost.ts";
import { definePlugin, type Bot } from "../../../src/plugins/definePlugin.ts";
import { Outbox } from "../../../src/outbox/Outbox.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import { SqlitePluginData } from "../../../src/store/sqlite/SqlitePluginData.ts";
import type { InboundItem } from "../../../src/inbound/InboundJournal.ts";
import type { MatrixRequest } from "../../../src/matrix/requests.ts";
import { userId } from "../../../src/ids.ts";

const BOT = "@courier:example.org";
const ROOM = "!r:example.org";

/** A host over an outbox whose transport records every request (the path holds the txnId). */
async function host(setup: (bot: Bot<unknown>) => void) {
  const sent: MatrixRequest[] = [];
  const outbox = new Outbox({
    store: new SqliteOutboxStore({ path: ":memory:" }),
    transport: { send: async (req) => (sent.push(req), { event_id: `$e${sent.length}` }) },
    appserviceId: "keys",
    botUserId: userId(BOT),
    rate: { perSecond: 1e6, burst: 1e6 },
  });
  const plugins = new PluginHost({
    outbox,
    data: new SqlitePluginData({ path: ":memory:" }),
    logger: pino({ level: "silent" }),
    botUserId: BOT,
    isOwnUser: (id) => id === BOT || id.startsWith("@courier_"),
    intent: () => {
      throw new Error("not used here");
    },
    maxAttempts: 1,
  });
  const loaded = await plugins.load(definePlugin({ name: "up", setup }), {});
  await outbox.start();
  return {
    loaded,
    status: plugins.status()[0]!,
    dispatch: (i: InboundItem) => plugins.dispatch(i),
    /** Every request path sent so far (each ends in or holds its txnId), sorted. */
    paths: async () => (await outbox.onIdle(), sent.map((r) => r.path).sort()),
    stop: async () => (await plugins.stop(), await outbox.stop()),
  };
}

// `key` is cast through: the item's shape is the inbound journal's, not under test here.
const item = (seq: number, kind: InboundItem["kind"], payload: Record<string, unknown>): InboundItem =>
  ({
    seq,
    txnId: "t1",
    kind,
    lane: kind === "event" ? `room:${ROOM}` : kind,
    key: `k${seq}`,
    eventId: payload.event_id as string | undefined,
    json: JSON.stringify(payload),
    attempts: 0,
  }) as InboundItem;
const event = (seq: number, type: string, content: Record<string, unknown>, extra: object = {}) =>
  item(seq, "event", {
    event_id: `$ev${seq}`,
    room_id: ROOM,
    sender: "@alice:example.org",
    type,
    origin_server_ts: 1,
    content,
    ...extra,
  });

/** One of each kind of traffic, the same for every host. */
const traffic = (): InboundItem[] => [
  event(1, "m.room.message", { msgtype: "m.text", body: "!hello there" }),
  event(2, "m.room.member", { membership: "join" }, { state_key: "@alice:example.org" }),
  event(3, "m.room.message", { msgtype: "m.emote", body: "waves" }),
  item(4, "toDevice", {
    type: "m.x.ping",
    sender: "@alice:example.org",
    to_user_id: BOT,
    to_device_id: "D",
    content: {},
  }),
  item(5, "ephemeral", { type: "m.typing", room_id: ROOM, content: { user_ids: [] } }),
];

async function pathsOf(setup: (bot: Bot<unknown>) => void): Promise<string[]> {
  const h = await host(setup);
  expect(h.status).toEqual({ name: "up", status: "running" });
  for (const i of traffic()) expect(await h.dispatch(i)).toEqual([]);
  const paths = await h.paths();
  await h.stop();
  return paths;
}

describe("cause keys: a handler's identity, not its registration index", () => {
  test("handlers reordered and one added: the same events send onto the same txnIds", async () => {
    const before = await pathsOf((bot) => {
      bot.command("hello", (ctx) => ctx.reply("hello!"));
      bot.on("m.room.message", (ctx) => ctx.reply(`seen ${ctx.event.content.body}`), { id: "seen" });
      bot.on({ type: "m.room.member", membership: "join" }, (ctx) => ctx.reply("welcome"));
      bot.on({ msgtype: "m.emote", type: "m.room.message" }, (ctx) => ctx.react("😀"), { id: "emote" });
      bot.onToDevice("m.x.ping", (ctx) => ctx.sendToDevice(ctx.sender, "*", "m.x.pong", {}));
      bot.onEphemeral("m.typing", (ctx) => ctx.send(ROOM, { msgtype: "m.notice", body: "typing" }));
    });
    const after = await pathsOf((bot) => {
      // Added first, so every index the others had moves.
      bot.on("m.room.message", (ctx) => ctx.react("👀"), { id: "added" });
      bot.onEphemeral("m.typing", (ctx) => ctx.send(ROOM, { msgtype: "m.notice", body: "typing" }));
      bot.on({ type: "m.room.message", msgtype: "m.emote" }, (ctx) => ctx.react("😀"), { id: "emote" });
      bot.onToDevice("m.x.ping", (ctx) => ctx.sendToDevice(ctx.sender, "*", "m.x.pong", {}));
      bot.on({ membership: "join", type: "m.room.member" }, (ctx) => ctx.reply("welcome"));
      bot.on("m.room.message", (ctx) => ctx.reply(`seen ${ctx.event.content.body}`), { id: "seen" });
      bot.command("hello", (ctx) => ctx.reply("hello!"));
    });
    // hello + seen×2 + welcome + emote reaction + pong + typing notice.
    expect(before).toHaveLength(7);
    // Every request of the old version is one the new version makes too, byte for byte; the new
    // handler's two reactions are the only new ones.
    expect(after).toEqual(expect.arrayContaining(before));
    expect(after).toHaveLength(before.length + 2);
  });

  test("a filter's key does not depend on how its fields are written", async () => {
    const a = await pathsOf((bot) => bot.on("m.room.message", (ctx) => ctx.reply("x")));
    const b = await pathsOf((bot) => bot.on({ type: "m.room.message" }, (ctx) => ctx.reply("x")));
    expect(b).toEqual(a);
    const c = await pathsOf((bot) =>
      bot.on({ type: "m.room.message", sender: /^@alice:/i, roomId: ROOM }, (ctx) => ctx.reply("x")),
    );
    const d = await pathsOf((bot) =>
      bot.on({ roomId: ROOM, sender: /^@alice:/i, type: "m.room.message" }, (ctx) => ctx.reply("x")),
    );
    expect(d).toEqual(c);
    // Another filter (here a RegExp with other flags) is another handler: other txnIds.
    const e = await pathsOf((bot) =>
      bot.on({ type: "m.room.message", sender: /^@alice:/, roomId: ROOM }, (ctx) => ctx.reply("x")),
    );
    expect(e).toHaveLength(2);
    expect(e.filter((p) => c.includes(p))).toEqual([]);
  });

  test("an id is honoured: the key follows the id, not the filter; another id is another key", async () => {
    const wide = await pathsOf((bot) => bot.on("m.room.message", (ctx) => ctx.reply("x"), { id: "greet" }));
    const narrowed = await pathsOf((bot) =>
      bot.on({ type: "m.room.message", msgtype: "m.text" }, (ctx) => ctx.reply("x"), { id: "greet" }),
    );
    expect(wide).toHaveLength(2);
    expect(narrowed).toHaveLength(1);
    expect(wide).toEqual(expect.arrayContaining(narrowed));
    const renamed = await pathsOf((bot) => bot.on("m.room.message", (ctx) => ctx.reply("x"), { id: "hi" }));
    expect(renamed.filter((p) => wide.includes(p))).toEqual([]);
    // Without the id, the filter is the identity: not the same key as with it.
    const unnamed = await pathsOf((bot) => bot.on("m.room.message", (ctx) => ctx.reply("x")));
    expect(unnamed.filter((p) => wide.includes(p))).toEqual([]);
  });

  test("two handlers on one event with ids each send under their own key", async () => {
    const paths = await pathsOf((bot) => {
      bot.on("m.room.message", (ctx) => ctx.reply("same"), { id: "a" });
      bot.on({ type: "m.room.message", msgtype: "m.text" }, (ctx) => ctx.reply("same"), { id: "b" });
      bot.onToDevice("m.x.ping", (ctx) => ctx.sendToDevice(ctx.sender, "*", "m.x.pong", {}), { id: "c" });
      bot.onToDevice("m.x.ping", (ctx) => ctx.sendToDevice(ctx.sender, "*", "m.x.pong", {}), { id: "d" });
    });
    // Event 1: a and b; event 3: a; the to-device item: c and d. Five distinct txnIds.
    expect(new Set(paths).size).toBe(5);
  });
});

describe("handler identities are checked at setup", () => {
  const refused: Array<[string, (bot: Bot<unknown>) => void, RegExp]> = [
    [
      "two handlers of one type without ids",
      (bot) => {
        bot.on("m.room.message", () => {});
        bot.on("m.room.message", () => {});
      },
      /could both handle the same event: give each handler an `id`/,
    ],
    [
      "an id on one of the two only",
      (bot) => {
        bot.on("m.room.message", () => {}, { id: "a" });
        bot.on({ type: "m.room.message", msgtype: "m.text" }, () => {});
      },
      /give each handler an `id`/,
    ],
    [
      "a filter with no fields and any other",
      (bot) => {
        bot.on({ type: "m.room.member", membership: "join" }, () => {});
        bot.on({}, () => {});
      },
      /give each handler an `id`/,
    ],
    [
      "a RegExp sender and another field (it may match the same event)",
      (bot) => {
        bot.on({ sender: /^@bob:/ }, () => {});
        bot.on({ type: "m.room.message", msgtype: "m.emote" }, () => {});
      },
      /give each handler an `id`/,
    ],
    [
      "a RegExp sender and a string sender",
      (bot) => {
        bot.on({ type: "m.room.message", sender: "@alice:x" }, () => {});
        bot.on({ type: "m.room.message", sender: /^@bob:/ }, () => {});
      },
      /give each handler an `id`/,
    ],
    [
      "the same id twice on overlapping handlers",
      (bot) => {
        bot.on("m.room.message", () => {}, { id: "a" });
        bot.on("m.room.message", () => {}, { id: "a" });
      },
      /handler id "a" is given to both .*unique within the plugin/,
    ],
    [
      "the same id on handlers that never meet (ids are unique within the plugin)",
      (bot) => {
        bot.on("m.room.message", () => {}, { id: "a" });
        bot.onToDevice("m.x.ping", () => {}, { id: "a" });
      },
      /handler id "a" is given to both/,
    ],
    [
      "two to-device handlers of one type without ids",
      (bot) => {
        bot.onToDevice("m.x.ping", () => {});
        bot.onToDevice("m.x.ping", () => {}, { id: "b" });
      },
      /bot\.onToDevice\("m\.x\.ping"\) and .*give each handler an `id`/,
    ],
    [
      "two ephemeral handlers of one type without ids",
      (bot) => {
        bot.onEphemeral("m.typing", () => {});
        bot.onEphemeral("m.typing", () => {});
      },
      /give each handler an `id`/,
    ],
    [
      "a command registered twice (names are case-insensitive)",
      (bot) => {
        bot.command("hello", () => {});
        bot.command("Hello", () => {});
      },
      /command "hello" is registered twice/,
    ],
    ["an empty id", (bot) => bot.on("m.room.message", () => {}, { id: "" }), /non-empty string/],
  ];

  test.each(refused)("refused: %s", async (_name, setup, message) => {
    const h = await host(setup);
    expect(h.loaded).toBe(false);
    expect(h.status).toEqual({ name: "up", status: "failed", error: expect.stringMatching(message) });
    await h.stop();
  });

  const accepted: Array<[string, (bot: Bot<unknown>) => void]> = [
    [
      "different types",
      (bot) => {
        bot.on("m.room.message", () => {});
        bot.on({ type: "m.room.member", membership: "join" }, () => {});
      },
    ],
    [
      "one type, different plain-string senders, rooms, msgtypes or memberships",
      (bot) => {
        bot.on({ type: "m.room.message", sender: "@a:x" }, () => {});
        bot.on({ type: "m.room.message", sender: "@b:x" }, () => {});
        bot.on({ type: "m.reaction", roomId: "!a:x" }, () => {});
        bot.on({ type: "m.reaction", roomId: "!b:x" }, () => {});
        bot.on({ type: "m.room.redaction", msgtype: "a" }, () => {});
        bot.on({ type: "m.room.redaction", msgtype: "b" }, () => {});
        bot.on({ type: "m.room.member", membership: "join" }, () => {});
        bot.on({ type: "m.room.member", membership: "leave" }, () => {});
      },
    ],
    [
      "overlapping handlers with distinct ids",
      (bot) => {
        bot.on("m.room.message", () => {}, { id: "a" });
        bot.on({ sender: /^@bob:/ }, () => {}, { id: "b" });
        bot.onToDevice("m.x.ping", () => {}, { id: "c" });
        bot.onToDevice("m.x.ping", () => {}, { id: "d" });
        bot.onEphemeral("m.typing", () => {}, { id: "e" });
        bot.onEphemeral("m.typing", () => {}, { id: "f" });
      },
    ],
    [
      "a command and an event handler on the same messages (keyed apart)",
      (bot) => {
        bot.command("hello", () => {});
        bot.command("bye", () => {});
        bot.on("m.room.message", () => {});
        bot.onToDevice("m.x.ping", () => {});
        bot.onToDevice("m.x.other", () => {});
      },
    ],
  ];

  test.each(accepted)("accepted: %s", async (_name, setup) => {
    const h = await host(setup);
    expect(h.status).toEqual({ name: "up", status: "running" });
    await h.stop();
  });
});
