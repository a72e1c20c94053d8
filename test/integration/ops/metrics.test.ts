// GET /metrics on a whole Courier against the fake homeserver: the counters follow real traffic
// (a transaction pushed in, a plugin's replies, a 429, a dead letter, a failing handler).
import { request } from "undici";
import { definePlugin } from "../../../src/plugins/definePlugin.ts";
import { startDashboardStack, type DashboardStack } from "../../support/dashboardStack.ts";

const ROOM = "!metrics:fake.test";
const BANNED = "!banned:fake.test";

const replier = definePlugin({
  name: "replier",
  setup(bot) {
    bot.on("m.room.message", async (ctx) => {
      await ctx.reply("seen");
    });
  },
});
const broken = definePlugin({
  name: "broken",
  setup(bot) {
    bot.on("m.room.message", () => {
      throw new Error("broken on purpose");
    });
  },
});

async function scrape(stack: DashboardStack, headers: Record<string, string> = {}) {
  const res = await request(`${stack.url}/metrics`, { headers });
  return { status: res.statusCode, type: String(res.headers["content-type"]), text: await res.body.text() };
}

/** The value of one sample, e.g. `courier_outbox_sent_total{kind="send"}`; undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const message = (n: number, room = ROOM) => ({
  type: "m.room.message",
  room_id: room,
  sender: "@alice:fake.test",
  event_id: `$m${n}`,
  origin_server_ts: Date.now(),
  content: { msgtype: "m.text", body: `hello ${n}` },
});

describe("metrics", () => {
  let stack: DashboardStack;
  afterEach(async () => stack?.stop());

  test("counters, histograms and gauges follow the traffic", async () => {
    stack = await startDashboardStack({
      adminToken: null,
      plugins: [{ definition: replier }, { definition: broken }],
      config: { dispatcher: { maxAttempts: 2 } },
    });
    stack.hs.failNext(1, "429");
    const pushed = await stack.hs.pushTransaction("t1", { events: [message(1), message(2)] });
    expect(pushed.status).toBe(200);
    await stack.hs.waitFor(() => stack.hs.roomEvents(ROOM).length === 2, 10_000);
    stack.hs.refuseRoom(BANNED);
    const dead = await stack.say(BANNED, "refused");
    await expect(dead.delivered()).rejects.toThrow();
    await stack.courier.dispatcher.onIdle();

    const { status, type, text } = await scrape(stack);
    expect(status).toBe(200);
    expect(type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(sample(text, "courier_inbound_transactions_total")).toBe(1);
    expect(sample(text, 'courier_inbound_items_total{kind="events"}')).toBe(2);
    expect(sample(text, 'courier_outbox_enqueued_total{kind="send"}')).toBe(3);
    expect(sample(text, 'courier_outbox_sent_total{kind="send"}')).toBe(2);
    expect(sample(text, 'courier_outbox_dead_total{kind="send"}')).toBe(1);
    expect(sample(text, 'courier_outbox_retried_total{kind="send"}')).toBe(1);
    expect(sample(text, 'courier_outbox_rate_limited_total{sender="@bot:fake.test"}')).toBe(1);
    expect(sample(text, "courier_outbox_send_duration_seconds_count")).toBe(2);
    expect(
      sample(
        text,
        'courier_handler_duration_seconds_count{plugin="replier",handler="replier on m.room.message"}',
      ),
    ).toBe(2);
    // Two events, two tries each: the broken handler fails four times.
    expect(
      sample(text, 'courier_handler_failures_total{plugin="broken",handler="broken on m.room.message"}'),
    ).toBe(4);
    expect(
      sample(text, 'courier_handler_failures_total{plugin="replier",handler="replier on m.room.message"}'),
    ).toBeUndefined();
    expect(sample(text, "courier_homeserver_up")).toBe(1);
    expect(sample(text, "courier_outbox_pending")).toBe(0);
    expect(text).toContain("courier_process_resident_memory_bytes");
  });

  test("queue depth per lane while the homeserver is paused", async () => {
    stack = await startDashboardStack({ adminToken: null });
    stack.hs.pause();
    for (let n = 0; n < 3; n++) await stack.say(ROOM, `held ${n}`);
    await stack.say("!other:fake.test", "held");
    const { text } = await scrape(stack);
    expect(sample(text, "courier_outbox_pending")).toBe(4);
    expect(sample(text, `courier_outbox_lane_pending{lane="room:${ROOM}"}`)).toBe(3);
    expect(sample(text, 'courier_outbox_lane_pending{lane="room:!other:fake.test"}')).toBe(1);
    expect(sample(text, "courier_outbox_oldest_pending_seconds")).toBeGreaterThanOrEqual(0);
    stack.hs.resume();
  });

  test("with metrics.token, a scrape needs it", async () => {
    const token = "metrics-token-0123456789";
    stack = await startDashboardStack({ adminToken: null, config: { metrics: { token } } });
    expect((await scrape(stack)).status).toBe(401);
    expect((await scrape(stack, { authorization: "Bearer wrong-token-0123456789" })).status).toBe(403);
    expect((await scrape(stack, { authorization: `Bearer ${token}` })).status).toBe(200);
    // The one Bearer check every route uses: the scheme in any case (it was refused 401 here).
    expect((await scrape(stack, { authorization: `bearer ${token}` })).status).toBe(200);
    expect((await scrape(stack, { authorization: `Basic ${token}` })).status).toBe(403);
    expect(stack.logs()).not.toContain(token);
  });

  test("wrong metrics tokens from one address: after 5, it waits (429 M_LIMIT_EXCEEDED), the right token too", async () => {
    const token = "metrics-token-0123456789";
    stack = await startDashboardStack({ adminToken: null, config: { metrics: { token } } });
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++)
      statuses.push((await scrape(stack, { authorization: `Bearer wrong-${i}` })).status);
    expect(statuses).toEqual([403, 403, 403, 403, 403, 429, 429, 429]);
    const waiting = await scrape(stack, { authorization: `Bearer ${token}` });
    expect(waiting.status).toBe(429);
    expect(JSON.parse(waiting.text)).toMatchObject({ errcode: "M_LIMIT_EXCEEDED" });
  });

  test("metrics.enabled false: no /metrics", async () => {
    stack = await startDashboardStack({ adminToken: null, config: { metrics: { enabled: false } } });
    expect((await scrape(stack)).status).toBe(404);
  });
});
