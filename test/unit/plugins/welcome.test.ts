import { pino } from "pino";
import { PluginHost } from "../../../src/plugins/PluginHost.ts";
import { Outbox } from "../../../src/outbox/Outbox.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import type { MatrixRequest } from "../../../src/matrix/requests.ts";
import { userId } from "../../../src/ids.ts";
import welcome from "../../../plugins/welcome/index.ts";

const BOT = "@courier:x";

async function setup(config: object) {
  const sent: MatrixRequest[] = [];
  const outbox = new Outbox({
    store: new SqliteOutboxStore({ path: ":memory:" }),
    transport: { send: async (req) => (sent.push(req), { event_id: "$x" }) },
    appserviceId: "t",
    botUserId: userId(BOT),
  });
  const host = new PluginHost({
    outbox,
    logger: pino({ level: "silent" }),
    botUserId: BOT,
    isOwnUser: (id) => id === BOT,
    intent: () => {
      throw new Error("not used");
    },
  });
  expect(await host.load(welcome, config)).toBe(true);
  await outbox.start();
  let seq = 0;
  const member = (room: string, user: string, content: object, prev?: object) =>
    host.dispatch({
      seq: ++seq,
      txnId: "t",
      kind: "event",
      lane: `room:${room}`,
      eventId: `$${seq}`,
      attempts: 0,
      json: JSON.stringify({
        event_id: `$${seq}`,
        room_id: room,
        sender: user,
        state_key: user,
        type: "m.room.member",
        origin_server_ts: 1,
        content,
        ...(prev ? { unsigned: { prev_content: prev } } : {}),
      }),
    });
  const bodies = async () => (await outbox.onIdle(), sent.map((r) => JSON.parse(r.body!).body as string));
  return { member, bodies };
}

describe("welcome plugin", () => {
  test("greets a new member with the template", async () => {
    const { member, bodies } = await setup({ text: "Hi {name} ({user}), welcome to {room}" });
    await member("!r:x", "@ann:x", { membership: "join", displayname: "Ann" });
    expect(await bodies()).toEqual(["Hi Ann (@ann:x), welcome to !r:x"]);
  });

  test("ignores profile changes, leaves, and rooms not listed", async () => {
    const { member, bodies } = await setup({ rooms: ["!only:x"] });
    await member("!only:x", "@ann:x", { membership: "join", displayname: "Ann 2" }, { membership: "join" });
    await member("!only:x", "@bob:x", { membership: "leave" });
    await member("!other:x", "@cid:x", { membership: "join" });
    await member("!only:x", "@dee:x", { membership: "join" }, { membership: "invite" });
    expect(await bodies()).toEqual(["Welcome, @dee:x!"]);
  });

  test("a rejected config disables only this plugin", async () => {
    const host = new PluginHost({
      outbox: {} as Outbox,
      logger: pino({ level: "silent" }),
      botUserId: BOT,
      isOwnUser: () => false,
      intent: () => {
        throw new Error("not used");
      },
    });
    expect(await host.load(welcome, { text: "" })).toBe(false);
    expect(host.status()[0]).toMatchObject({
      name: "welcome",
      status: "failed",
      error: expect.stringContaining("text"),
    });
  });
});
