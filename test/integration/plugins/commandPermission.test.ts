// Commands with `minPowerLevel` on a whole Courier against the fake homeserver: the framework
// reads the room's power levels (and, in room version 12, its creators), refuses with a reply,
// and notices a change of power levels from the next command on.
import { definePlugin } from "../../../src/plugins/definePlugin.ts";
import { startDashboardStack, type DashboardStack } from "../../support/dashboardStack.ts";

const ROOM = "!powers:fake.test";
const V12 = "!v12room";
let n = 0;
const message = (sender: string, body: string, room = ROOM) => ({
  type: "m.room.message",
  room_id: room,
  sender,
  event_id: `$p${++n}`,
  origin_server_ts: Date.now(),
  content: { msgtype: "m.text", body },
});

const guarded = definePlugin({
  name: "guarded",
  setup(bot) {
    bot.command("purge", (ctx) => ctx.reply(`purged by ${ctx.sender}`), {
      minPowerLevel: 50,
      help: "admins only",
    });
    bot.command("hello", (ctx) => ctx.reply("hello"));
  },
});

describe("command permission by power level", () => {
  let stack: DashboardStack;
  afterEach(async () => stack?.stop());

  const replies = (room = ROOM) =>
    stack.hs.roomEvents(room).map((e) => String((e.content as { body?: unknown }).body ?? ""));
  const say = (sender: string, body: string, room = ROOM) =>
    stack.hs.pushTransaction(`t${++n}`, { events: [message(sender, body, room)] });

  test("below the level: refused with a reply; at it: runs; a power change counts at once", async () => {
    stack = await startDashboardStack({ adminToken: null, plugins: [{ definition: guarded }] });
    const levels = { users: { "@mod:fake.test": 50 }, users_default: 0 };
    stack.hs.setRoomState(ROOM, "m.room.power_levels", "", levels, "@owner:fake.test");
    stack.hs.setRoomState(ROOM, "m.room.create", "", { room_version: "10" }, "@owner:fake.test");

    await say("@alice:fake.test", "!purge");
    await say("@mod:fake.test", "!purge");
    await say("@alice:fake.test", "!hello");
    await stack.hs.waitFor(() => replies().length === 3, 10_000, "three replies");
    expect(replies()).toEqual([
      "!purge needs power level 50 in this room; you have 0.",
      "purged by @mod:fake.test",
      "hello",
    ]);

    // Alice is promoted; the power_levels event reaches us before her next command.
    const promoted = { ...levels, users: { ...levels.users, "@alice:fake.test": 100 } };
    stack.hs.setRoomState(ROOM, "m.room.power_levels", "", promoted, "@owner:fake.test");
    await stack.hs.pushTransaction(`t${++n}`, {
      events: [
        {
          type: "m.room.power_levels",
          state_key: "",
          room_id: ROOM,
          sender: "@owner:fake.test",
          event_id: `$pl${n}`,
          origin_server_ts: Date.now(),
          content: promoted,
        },
        message("@alice:fake.test", "!purge"),
      ],
    });
    await stack.hs.waitFor(() => replies().length === 4, 10_000, "the fourth reply");
    expect(replies()[3]).toBe("purged by @alice:fake.test");

    await say("@alice:fake.test", "!help");
    await stack.hs.waitFor(() => replies().length === 5, 10_000, "help");
    expect(replies()[4]).toContain("!purge: admins only (power level 50)");
  }, 30_000);

  test("room version 12: the creators outrank everyone without being listed", async () => {
    stack = await startDashboardStack({ adminToken: null, plugins: [{ definition: guarded }] });
    stack.hs.setRoomState(V12, "m.room.power_levels", "", { users: {} }, "@carol:fake.test");
    stack.hs.setRoomState(
      V12,
      "m.room.create",
      "",
      { room_version: "12", additional_creators: ["@dave:fake.test"] },
      "@carol:fake.test",
    );
    await say("@carol:fake.test", "!purge", V12);
    await say("@dave:fake.test", "!purge", V12);
    await say("@erin:fake.test", "!purge", V12);
    await stack.hs.waitFor(() => replies(V12).length === 3, 10_000, "three replies");
    expect(replies(V12)).toEqual([
      "purged by @carol:fake.test",
      "purged by @dave:fake.test",
      "!purge needs power level 50 in this room; you have 0.",
    ]);
  }, 30_000);
});
