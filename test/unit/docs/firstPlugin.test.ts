// The "Write your first plugin" page (docs/plugins.md) shows docs/examples/dice.ts; this runs it.
import { readFileSync } from "node:fs";
import { pino } from "pino";
import { PluginHost } from "../../../src/plugins/PluginHost.ts";
import { Outbox } from "../../../src/outbox/Outbox.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import type { MatrixRequest } from "../../../src/matrix/requests.ts";
import { userId } from "../../../src/ids.ts";
import dice from "../../../docs/examples/dice.ts";

const BOT = "@courier:x";

test("the page shows the example file as it is", () => {
  const page = readFileSync(new URL("../../../docs/plugins.md", import.meta.url), "utf8");
  const code = readFileSync(new URL("../../../docs/examples/dice.ts", import.meta.url), "utf8");
  expect(page).toContain(code);
});

test("the example plugin answers !roll and shows in !help", async () => {
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
  expect(await host.load(dice, { maxDice: 3 })).toBe(true);
  await outbox.start();
  const say = (n: number, body: string) =>
    host.dispatch({
      seq: n,
      txnId: "t",
      kind: "event",
      lane: "room:!r:x",
      eventId: `$${n}`,
      attempts: 0,
      json: JSON.stringify({
        event_id: `$${n}`,
        room_id: "!r:x",
        sender: "@ann:x",
        type: "m.room.message",
        origin_server_ts: 1,
        content: { msgtype: "m.text", body },
      }),
    });
  await say(1, "!roll 3d6");
  await say(2, "!roll 9d6");
  await say(3, "!roll dice");
  await say(4, "!help");
  await outbox.onIdle();
  const bodies = sent.map((r) => JSON.parse(r.body!).body as string);
  expect(bodies[0]).toMatch(/^[1-6] \+ [1-6] \+ [1-6] = (\d+)$/);
  const [, total] = /= (\d+)$/.exec(bodies[0]!)!;
  expect(Number(total)).toBe(
    bodies[0]!
      .split(" = ")[0]!
      .split(" + ")
      .reduce((a, b) => a + Number(b), 0),
  );
  expect(bodies[1]).toBe("at most 3 dice");
  expect(bodies[2]).toBe("usage: !roll NdM, e.g. !roll 2d6");
  expect(bodies[3]).toContain("!roll [NdM]: rolls dice");
});
