// routeEvent without a runtime: no outbox, no store, no host. Plugins are loaded from definitions
// (loadPlugin with a stub store), items are plain objects, and the jobs are read, not run, except
// where a test runs one on a recording context to see what it would do.
import { pino } from "pino";
import { definePlugin, type Bot, type SendContext } from "../../../src/plugins/definePlugin.ts";
import { emptyPlugin, loadPlugin, type LoadedPlugin } from "../../../src/plugins/loadPlugin.ts";
import {
  helpText,
  matches,
  routeEvent,
  type RouteOptions,
  type RoutedItem,
} from "../../../src/plugins/routeEvent.ts";
import type { PowerLevels } from "../../../src/plugins/PowerLevels.ts";
import type { MatrixEvent } from "../../../src/plugins/events.ts";
import type { PluginData } from "../../../src/store/PluginStore.ts";

const BOT = "@courier:x";
const ROOM = "!r:x";
const silent = pino({ level: "silent" });
const noData = { forPlugin: () => ({}) } as unknown as PluginData;

async function plugin(name: string, setup: (bot: Bot<unknown>) => void): Promise<LoadedPlugin> {
  const loaded = emptyPlugin(name, silent);
  const ok = await loadPlugin(
    loaded,
    definePlugin({ name, setup }),
    {},
    {
      botUserId: BOT,
      data: noData,
      addSchedule: () => {},
    },
  );
  if (!ok) throw new Error(`${name} did not load: ${loaded.error}`);
  return loaded;
}

/** Options whose intent records joins and whose power levels are `levels` (none: unset). */
function options(levels?: Record<string, number>) {
  const joins: Array<[user: string, room: string]> = [];
  const route: RouteOptions = {
    isOwnUser: (id) => id === BOT || id.startsWith("@courier_"),
    commandPrefix: "!",
    intent: (user) => ({
      userId: user,
      ensureRegistered: async () => {},
      join: async (room) => void joins.push([user, room]),
      setDisplayName: async () => {},
      setAvatarUrl: async () => {},
      createRoom: async () => "!new:test",
      invite: async () => {},
      leave: async () => {},
      getState: async () => undefined,
    }),
    powerLevels:
      levels && ({ levelOf: async (_room: string, user: string) => levels[user] ?? 0 } as PowerLevels),
  };
  return { route, joins };
}

let n = 0;
const event = (type: string, content: Record<string, unknown>, extra: object = {}): RoutedItem => ({
  kind: "event",
  seq: ++n,
  payload: {
    event_id: `$e${n}`,
    room_id: ROOM,
    sender: "@ann:x",
    type,
    origin_server_ts: 1,
    content,
    ...extra,
  },
});
const message = (body: string, sender = "@ann:x") =>
  event("m.room.message", { msgtype: "m.text", body }, { sender });
const summary = (jobs: ReturnType<typeof routeEvent>) =>
  jobs.map((j) => ({ label: j.label, cause: j.cause, plugin: j.plugin?.name, eventId: j.eventId }));

/** A send context that records what is sent instead of sending it. */
function recordingContext() {
  const sent: Array<{ room: string; content: Record<string, unknown> }> = [];
  const ctx = {
    send: async (room: string, content: Record<string, unknown>) => (sent.push({ room, content }), {}),
  } as unknown as SendContext<unknown>;
  return { ctx, sent };
}

describe("routeEvent", () => {
  test("a room event goes to every matching handler, in plugin then handler order, keyed by identity", async () => {
    const a = await plugin("a", (bot) => {
      bot.on("m.room.message", () => {});
      bot.command("ping", () => {});
      bot.on({ type: "m.room.member" }, () => {});
    });
    const b = await plugin("b", (bot) => {
      bot.on({ sender: /^@ann:/ }, () => {}, { id: "ann" });
      bot.command("ping", () => {});
    });
    const item = message("!ping now");
    const id = (item.payload as { event_id: string }).event_id;
    expect(summary(routeEvent(item, [a, b], options().route))).toEqual([
      { label: "a on m.room.message", cause: `a/on{type="m.room.message"}:${id}`, plugin: "a", eventId: id },
      { label: "a command ping", cause: `a/command:ping:${id}`, plugin: "a", eventId: id },
      { label: "b on m.room.message", cause: `b/id:ann:${id}`, plugin: "b", eventId: id },
      { label: "b command ping", cause: `b/command:ping:${id}`, plugin: "b", eventId: id },
    ]);
  });

  test("to-device and ephemeral items go to handlers of their kind and type, keyed by the item's seq", async () => {
    const p = await plugin("p", (bot) => {
      bot.onToDevice("m.x.ping", () => {});
      bot.onEphemeral("m.typing", () => {}, { id: "typing" });
      bot.on("m.x.ping", () => {});
    });
    const { route } = options();
    const toDevice: RoutedItem = {
      kind: "toDevice",
      seq: 41,
      payload: { type: "m.x.ping", sender: "@ann:x" },
    };
    const ephemeral: RoutedItem = {
      kind: "ephemeral",
      seq: 42,
      payload: { type: "m.typing", room_id: ROOM },
    };
    expect(summary(routeEvent(toDevice, [p], route))).toEqual([
      { label: "p toDevice m.x.ping", cause: "p/todevice:m.x.ping:item:41", plugin: "p", eventId: undefined },
    ]);
    expect(summary(routeEvent(ephemeral, [p], route))).toEqual([
      { label: "p ephemeral m.typing", cause: "p/id:typing:item:42", plugin: "p", eventId: undefined },
    ]);
    expect(routeEvent({ ...toDevice, payload: { type: "m.x.other" } }, [p], route)).toEqual([]);
    expect(routeEvent({ kind: "deviceLists", seq: 43, payload: { changed: [] } }, [p], route)).toEqual([]);
  });

  test("a to-device handler gets the message and its sender; an event handler the event context", async () => {
    const seen: unknown[] = [];
    const p = await plugin("p", (bot) => {
      bot.onToDevice("m.x.ping", (ctx) => void seen.push({ event: ctx.event, sender: ctx.sender }));
      bot.on("m.room.message", (ctx) => void seen.push({ roomId: ctx.roomId, sender: ctx.sender }));
    });
    const { ctx } = recordingContext();
    const payload = { type: "m.x.ping", sender: "@ann:x", content: {} };
    for (const item of [{ kind: "toDevice", seq: 1, payload } as const, message("hi")]) {
      for (const job of routeEvent(item, [p], options().route)) await job.run(ctx);
    }
    expect(seen).toEqual([
      { event: payload, sender: "@ann:x" },
      { roomId: ROOM, sender: "@ann:x" },
    ]);
  });

  test("an invite of one of our users is joined, whoever sent it; other invites are not", async () => {
    const { route, joins } = options();
    const invite = (user: string, sender = "@ann:x") =>
      event("m.room.member", { membership: "invite" }, { state_key: user, sender });
    const jobs = routeEvent(invite("@courier_ghost:x", BOT), [], route);
    expect(summary(jobs)).toEqual([
      {
        label: "auto-join",
        cause: expect.stringMatching(/^courier\/join:\$e\d+$/),
        plugin: undefined,
        eventId: expect.any(String),
      },
    ]);
    expect(joins).toEqual([]);
    await jobs[0]!.run(recordingContext().ctx);
    expect(joins).toEqual([["@courier_ghost:x", ROOM]]);
    expect(routeEvent(invite("@bob:x"), [], route)).toEqual([]);
  });

  test("what our own users say reaches no plugin", async () => {
    const p = await plugin("p", (bot) => {
      bot.on("m.room.message", () => {});
      bot.command("ping", () => {});
    });
    const { route } = options();
    expect(routeEvent(message("!ping", BOT), [p], route)).toEqual([]);
    expect(routeEvent(message("!ping", "@courier_ghost:x"), [p], route)).toEqual([]);
    expect(routeEvent(message("!help", BOT), [p], route)).toEqual([]);
    expect(routeEvent(message("!ping", "@bob:x"), [p], route)).toHaveLength(2);
  });

  test("a failed plugin gets nothing and is left out of help", async () => {
    const up = await plugin("up", (bot) => bot.command("ping", () => {}, { help: "pong" }));
    const down = await plugin("down", (bot) => bot.command("pong", () => {}));
    down.status = "failed";
    const { route } = options();
    expect(routeEvent(message("!pong"), [up, down], route)).toEqual([]);
    expect(helpText([up, down], "!")).toBe("Commands (prefix !):\n!help: this list\n!ping: pong");
  });

  test("help is the framework's unless a plugin has a help command; it lists usage, help and power", async () => {
    const p = await plugin("p", (bot) => {
      bot.command("roll", () => {}, { usage: "[NdM]", help: "rolls dice" });
      bot.command("kick", () => {}, { minPowerLevel: 50 });
    });
    const { route } = options();
    const jobs = routeEvent(message("!HELP"), [p], route);
    expect(summary(jobs)).toEqual([
      {
        label: "help",
        cause: expect.stringMatching(/^courier\/help:/),
        plugin: undefined,
        eventId: expect.any(String),
      },
    ]);
    const { ctx, sent } = recordingContext();
    await jobs[0]!.run(ctx);
    expect(sent.map((s) => s.content.body)).toEqual([
      "Commands (prefix !):\n!help: this list\n!roll [NdM]: rolls dice\n!kick: (p) (power level 50)",
    ]);

    const own = await plugin("own", (bot) => bot.command("help", () => {}));
    expect(summary(routeEvent(message("!help"), [p, own], route)).map((j) => j.label)).toEqual([
      "own command help",
    ]);
  });

  test("a command with minPowerLevel runs for a sender with the level, and is refused with a reply otherwise", async () => {
    const ran: string[] = [];
    const p = await plugin("p", (bot) =>
      bot.command("kick", (ctx) => void ran.push(ctx.command.rest), { minPowerLevel: 50 }),
    );
    const run = async (route: RouteOptions, sender: string) => {
      const { ctx, sent } = recordingContext();
      for (const job of routeEvent(message("!kick bob", sender), [p], route)) await job.run(ctx);
      return sent.map((s) => s.content.body);
    };
    const levels = options({ "@mod:x": 50, "@ann:x": 10 }).route;
    expect(await run(levels, "@mod:x")).toEqual([]);
    expect(ran).toEqual(["bob"]);
    expect(await run(levels, "@ann:x")).toEqual(["!kick needs power level 50 in this room; you have 10."]);
    expect(await run(options().route, "@mod:x")).toEqual([
      "!kick needs power level 50, and power levels cannot be checked here.",
    ]);
    expect(ran).toEqual(["bob"]);
  });

  test("a command missing a required argument is answered with its usage, and its handler does not run", async () => {
    const ran: string[] = [];
    const p = await plugin("p", (bot) => {
      bot.command("echo", (ctx) => void ran.push(`echo ${ctx.command.rest}`), { usage: "<text>" });
      bot.command("roll", (ctx) => void ran.push(`roll ${ctx.command.rest}`), { usage: "[NdM]" });
      bot.command("pair", (ctx) => void ran.push(`pair ${ctx.command.rest}`), { usage: "<a> <b>" });
    });
    const run = async (body: string) => {
      const { ctx, sent } = recordingContext();
      for (const job of routeEvent(message(body), [p], options().route)) await job.run(ctx);
      return sent.map((s) => s.content.body);
    };
    expect(await run("!echo")).toEqual(["usage: !echo <text>"]);
    expect(await run("!echo   ")).toEqual(["usage: !echo <text>"]);
    expect(await run("!pair one")).toEqual(["usage: !pair <a> <b>"]);
    expect(ran).toEqual([]);
    expect(await run("!echo hi there")).toEqual([]);
    expect(await run("!roll")).toEqual([]);
    expect(await run("!pair one two")).toEqual([]);
    expect(ran).toEqual(["echo hi there", "roll ", "pair one two"]);
  });

  test("routing runs nothing and changes nothing: the same item routes to the same jobs again", async () => {
    let calls = 0;
    const p = await plugin("p", (bot) => {
      bot.on("m.room.message", () => void calls++);
      bot.command("ping", () => void calls++);
    });
    const before = structuredClone(p.registrations.map((r) => r.identity));
    const { route, joins } = options();
    const item = message("!ping");
    const first = summary(routeEvent(item, [p], route));
    expect(summary(routeEvent(item, [p], route))).toEqual(first);
    expect(first.map((j) => j.label)).toEqual(["p on m.room.message", "p command ping"]);
    expect(calls).toBe(0);
    expect(joins).toEqual([]);
    expect(p.registrations.map((r) => r.identity)).toEqual(before);
  });
});

describe("matches", () => {
  const ev = {
    event_id: "$1",
    room_id: ROOM,
    sender: "@ann:x",
    type: "m.room.member",
    origin_server_ts: 1,
    content: { membership: "join", msgtype: undefined },
  } as unknown as MatrixEvent;

  test("every field given must match; a RegExp sender is tested", () => {
    expect(matches({}, ev)).toBe(true);
    expect(matches({ type: "m.room.member", roomId: ROOM, membership: "join" }, ev)).toBe(true);
    expect(matches({ sender: /^@ann:/ }, ev)).toBe(true);
    expect(matches({ sender: "@ann:x" }, ev)).toBe(true);
    expect(matches({ type: "m.room.message" }, ev)).toBe(false);
    expect(matches({ roomId: "!other:x" }, ev)).toBe(false);
    expect(matches({ sender: /^@bob:/ }, ev)).toBe(false);
    expect(matches({ membership: "leave" }, ev)).toBe(false);
    expect(matches({ msgtype: "m.text" }, ev)).toBe(false);
  });
});
