// A whole Courier on PostgreSQL (store.url) against the fake homeserver: transactions journaled
// and handled once (a resend after a restart on the same database runs no handler again), replies
// through the outbox, plugin data and the operator's views read from the database.
import { definePlugin } from "../../../src/plugins/definePlugin.ts";
import { startDashboardStack, type DashboardStack } from "../../support/dashboardStack.ts";
import { startPostgresCluster, type PostgresCluster } from "../../support/postgresCluster.ts";

const ROOM = "!pg:fake.test";
let runs = 0;
const counter = definePlugin({
  name: "counter",
  setup(bot) {
    bot.on("m.room.message", async (ctx) => {
      runs++;
      const seen = ((await ctx.store.get<number>("seen")) ?? 0) + 1;
      await ctx.store.set("seen", seen);
      await ctx.reply(`seen ${seen}`);
    });
  },
});

const message = (n: number) => ({
  type: "m.room.message",
  room_id: ROOM,
  sender: "@alice:fake.test",
  event_id: `$pg${n}`,
  origin_server_ts: Date.now(),
  content: { msgtype: "m.text", body: `hello ${n}` },
});

describe("a Courier on PostgreSQL", () => {
  let cluster: PostgresCluster;
  let stack: DashboardStack | undefined;
  beforeAll(async () => (cluster = await startPostgresCluster()), 60_000);
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });
  afterAll(async () => cluster.stop(), 30_000);

  test("handles each event once, across a restart on the same database; replies in order", async () => {
    const url = await cluster.createDatabase();
    const start = () =>
      startDashboardStack({ plugins: [{ definition: counter }], config: { store: { url } } });
    stack = await start();
    const first = await stack.hs.pushTransaction("t1", { events: [message(1), message(2), message(3)] });
    expect(first.status).toBe(200);
    await stack.hs.waitFor(() => stack!.hs.roomEvents(ROOM).length === 3, 10_000, "three replies");
    await stack.courier.dispatcher.onIdle();
    expect(runs).toBe(3);
    // Outcomes are committed shortly after the sends (settlements are grouped).
    await stack.hs.waitFor(
      async () => (await stack!.courier.outbox.stats()).totals.sent === 3,
      10_000,
      "3 sends recorded",
    );
    expect((await stack.courier.outbox.stats()).totals).toEqual({ pending: 0, sent: 3, dead: 0 });
    const hs = stack.hs;
    await stack.courier.stop(2000);

    // The same database, a new process' worth of Courier: the homeserver resends t1 (re-serialised,
    // as Synapse does) with one new event.
    await hs.stop();
    stack = await start();
    const again = await stack.hs.pushTransaction("t1", {
      events: [message(1), message(2), message(3), message(4)].map((e) => ({ ...e, unsigned: { age: 7 } })),
    });
    expect(again.status).toBe(200);
    await stack.hs.waitFor(() => stack!.hs.roomEvents(ROOM).length === 1, 10_000, "one reply");
    await stack.courier.dispatcher.onIdle();
    expect(runs).toBe(4);
    expect(stack.hs.roomEvents(ROOM).map((e) => (e.content as { body: string }).body)).toEqual(["seen 4"]);
    // Outcomes are committed shortly after the sends (settlements are grouped).
    await stack.hs.waitFor(
      async () => (await stack!.courier.outbox.stats()).totals.sent === 4,
      10_000,
      "4 sends recorded",
    );
    expect((await stack.courier.outbox.stats()).totals).toEqual({ pending: 0, sent: 4, dead: 0 });
  }, 60_000);
});
