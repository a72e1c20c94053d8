// Three Couriers on one PostgreSQL database behind one appservice registration, the homeserver's
// transactions spread across them as a load balancer would: each event is handled once (handler
// runs counted across the three), and the replies of each room arrive in order. Then one instance
// stops mid-traffic and the other two take its rooms.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { runDoctor } from "../../../src/ops/doctor/runDoctor.ts";
import { definePlugin } from "../../../src/plugins/definePlugin.ts";
import { startDashboardStack, type DashboardStack } from "../../support/dashboardStack.ts";
import { FakeHomeserver } from "../../support/FakeHomeserver.ts";
import { startPostgresCluster, type PostgresCluster } from "../../support/postgresCluster.ts";

const ROOMS = 10;
const PER_ROOM = 30;
const handled = new Map<string, number>();
const counter = definePlugin({
  name: "counter",
  setup(bot) {
    bot.on("m.room.message", async (ctx) => {
      const n = (ctx.event.content as { n: number }).n;
      handled.set(ctx.event.event_id, (handled.get(ctx.event.event_id) ?? 0) + 1);
      await ctx.reply(`seen ${n}`);
    });
  },
});

const message = (n: number) => ({
  type: "m.room.message",
  room_id: `!room${n % ROOMS}:fake.test`,
  sender: "@alice:fake.test",
  event_id: `$e${n}`,
  origin_server_ts: Date.now(),
  content: { msgtype: "m.text", body: `hello ${n}`, n },
});

describe("several Couriers on one PostgreSQL database", () => {
  let cluster: PostgresCluster;
  let hs: FakeHomeserver;
  const stacks: DashboardStack[] = [];
  beforeAll(async () => {
    cluster = await startPostgresCluster();
    hs = await FakeHomeserver.start({ asToken: "several-as" });
  }, 60_000);
  afterAll(async () => {
    for (const stack of stacks) await stack.stop().catch(() => {});
    await hs.stop();
    await cluster.stop();
  }, 60_000);

  test("events spread across three instances are handled once; replies in order per room; a stopped instance's rooms are taken over", async () => {
    const url = await cluster.createDatabase();
    const shared = { hs, asToken: "several-as", hsToken: "several-hs" };
    for (let i = 0; i < 3; i++) {
      stacks.push(
        await startDashboardStack({
          adminToken: null,
          plugins: [{ definition: counter }],
          sharedHomeserver: shared,
          // 3 s: a CI machine under load can pause an instance past a 1 s lease (docs/scaling.md).
          config: { store: { url, leaseSeconds: 3 } },
        }),
      );
    }
    // A load balancer: each transaction to the next instance that is up.
    let next = 0;
    const down = new Set<DashboardStack>();
    const push = async (txnId: string, events: object[]) => {
      const up = stacks.filter((s) => !down.has(s));
      const target = up[next++ % up.length]!;
      hs.setAppservice({ url: target.url, hsToken: shared.hsToken, id: "courier" });
      const pushed = await hs.pushTransaction(txnId, { events });
      expect(pushed.status).toBe(200);
    };
    const total = ROOMS * PER_ROOM;
    for (let t = 0; t < total / 10; t++) {
      await push(
        `t${t}`,
        Array.from({ length: 10 }, (_, k) => message(t * 10 + k)),
      );
      if (t === total / 20) {
        // Mid-traffic: it stops taking transactions, finishes what it holds, gives its rooms back.
        down.add(stacks[0]!);
        await stacks[0]!.courier.stop(2000);
      }
    }
    await hs.waitFor(() => hs.allRoomEvents().length >= total, 60_000, "every reply");
    expect([...handled.values()].filter((runs) => runs !== 1)).toEqual([]);
    expect(handled.size).toBe(total);
    for (let r = 0; r < ROOMS; r++) {
      const replies = hs.roomEvents(`!room${r}:fake.test`).map((e) => (e.content as { body: string }).body);
      expect(replies).toEqual(Array.from({ length: PER_ROOM }, (_, i) => `seen ${i * ROOMS + r}`));
    }

    // Operators see who holds what: the metric, and `courier doctor` on the database.
    const metric = await stacks[1]!.courier.metrics!.registry.getSingleMetricAsString("courier_lanes_owned");
    expect(metric).toMatch(/courier_lanes_owned\{work="outbox"\} \d+/);
    const dir = mkdtempSync(path.join(tmpdir(), "courier-doctor-pg-"));
    const config = path.join(dir, "config.yaml");
    writeFileSync(config, `homeserver:\n  url: ${hs.url}\n  serverName: fake.test\nstore:\n  url: ${url}\n`);
    const store = (await runDoctor(config, { env: {} })).find((r) => r.name === "store");
    rmSync(dir, { recursive: true, force: true });
    expect(store).toMatchObject({
      status: "pass",
      detail: expect.stringMatching(/schema \d+; 2 instance\(s\) seen/),
    });
  }, 120_000);
});
