import { Outbox } from "../../../src/outbox/Outbox.ts";
import type { OutboxItem } from "../../../src/outbox/types.ts";
import type { OutboxTransport } from "../../../src/outbox/options.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import { MatrixError, MatrixNetworkError } from "../../../src/matrix/MatrixError.ts";
import type { MatrixRequest } from "../../../src/matrix/requests.ts";
import { DeadLetterError, EventTooLargeError, OutboxStoppedError } from "../../../src/errors.ts";
import { roomId, userId, type RoomId } from "../../../src/ids.ts";

/** Records requests; `answer` decides each one (default: success with an event id per path). */
class RecordingTransport implements OutboxTransport {
  requests: MatrixRequest[] = [];
  answer: (req: MatrixRequest, n: number) => Promise<unknown> = async (req) => ({
    event_id: `$${req.path.length}`,
  });
  async send(req: MatrixRequest): Promise<unknown> {
    this.requests.push(req);
    return this.answer(req, this.requests.length);
  }
  bodiesFor(room: string): string[] {
    return this.requests.filter((r) => r.path.includes(encodeURIComponent(room))).map((r) => r.body ?? "");
  }
}

const bot = userId("@bot:example.org");
const ROOMS = [roomId("!a:example.org"), roomId("!b:example.org"), roomId("!c:example.org")];

function setup(overrides: Partial<ConstructorParameters<typeof Outbox>[0]> = {}) {
  const store = new SqliteOutboxStore({ path: ":memory:" });
  const transport = new RecordingTransport();
  const outbox = new Outbox({
    store,
    transport,
    appserviceId: "test",
    botUserId: bot,
    retry: { baseMs: 1, capMs: 5 },
    rate: { perSecond: 1e6, burst: 1e6 },
    random: () => 0.5,
    ...overrides,
  });
  return { store, transport, outbox };
}

const msg = (room: RoomId, n: number): Extract<OutboxItem, { kind: "send" }> => ({
  kind: "send",
  roomId: room,
  eventType: "m.room.message",
  content: { msgtype: "m.text", body: `m${n}` },
  cause: `cause-${n}`,
  ordinal: 0,
});

describe("Outbox", () => {
  test("delivers each lane in enqueue order, lanes concurrently", async () => {
    const { outbox, transport } = setup({ maxConcurrency: 3 });
    // Random latency so that lanes interleave and any reordering inside a lane would show.
    let seed = 7;
    transport.answer = async (req) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      await new Promise((r) => setTimeout(r, seed % 3));
      return { event_id: `$${req.path}` };
    };
    await outbox.start();
    await Promise.all(Array.from({ length: 90 }, (_, i) => outbox.enqueue(msg(ROOMS[i % 3]!, i))));
    await outbox.onIdle();
    for (const [r, room] of ROOMS.entries()) {
      const expected = Array.from({ length: 30 }, (_, k) =>
        JSON.stringify({ msgtype: "m.text", body: `m${k * 3 + r}` }),
      );
      expect(transport.bodiesFor(room)).toEqual(expected);
    }
  });

  test("the same cause and ordinal is journaled and sent once", async () => {
    const { outbox, transport } = setup();
    await outbox.start();
    const first = await outbox.enqueue(msg(ROOMS[0]!, 1));
    const again = await outbox.enqueue({ ...msg(ROOMS[0]!, 1), content: { body: "changed on replay" } });
    expect(again.txnId).toBe(first.txnId);
    expect(again.duplicate).toBe(true);
    await expect(first.delivered()).resolves.toMatchObject({ eventId: expect.stringMatching(/^\$/) });
    await expect(again.delivered()).resolves.toEqual(await first.delivered());
    expect(transport.requests).toHaveLength(1);
    expect(transport.requests[0]!.body).toContain("m1");
  });

  test("retries transient failures with the byte-identical request, in order", async () => {
    const { outbox, transport } = setup();
    transport.answer = async (req, n) => {
      if (n % 3 === 1) throw new MatrixNetworkError("reset", "ECONNRESET");
      if (n % 3 === 2) throw new MatrixError(502, "bad gateway");
      return { event_id: `$${req.path}` };
    };
    await outbox.start();
    const entries = await Promise.all([0, 1, 2].map((i) => outbox.enqueue(msg(ROOMS[0]!, i))));
    await outbox.onIdle();
    expect(transport.requests).toHaveLength(9);
    for (let i = 0; i < 3; i++) {
      const attempts = transport.requests.slice(i * 3, i * 3 + 3);
      expect(new Set(attempts.map((r) => `${r.method} ${r.path} ${r.body}`)).size).toBe(1);
      expect(attempts[0]!.path).toContain(entries[i]!.txnId);
    }
    expect((await outbox.stats()).retried).toBe(6);
  });

  test("a permanent error dead-letters the head and the lane moves on", async () => {
    const { outbox, transport } = setup();
    transport.answer = async (req) => {
      if (req.body?.includes("m1"))
        throw new MatrixError(403, { errcode: "M_FORBIDDEN", error: "not in room" });
      return { event_id: "$ok" };
    };
    await outbox.start();
    const entries = await Promise.all([0, 1, 2].map((i) => outbox.enqueue(msg(ROOMS[0]!, i))));
    const dead = entries[1]!.delivered();
    await expect(dead).rejects.toBeInstanceOf(DeadLetterError);
    await expect(dead).rejects.toMatchObject({ errcode: "M_FORBIDDEN", status: 403 });
    await outbox.onIdle();
    expect(transport.requests).toHaveLength(3);
    const stats = await outbox.stats();
    expect(stats.totals).toEqual({ pending: 0, sent: 2, dead: 1 });
    // Awaiting delivery after the fact still reports the outcome.
    await expect(entries[2]!.delivered()).resolves.toMatchObject({ eventId: "$ok" });
    await expect(entries[1]!.delivered()).rejects.toThrow(/not in room/);
  });

  test("a dead letter put back to pending (operator retry) is sent at once", async () => {
    const { outbox, transport, store } = setup();
    let refuse = true;
    transport.answer = async () => {
      if (refuse) throw new MatrixError(403, { errcode: "M_FORBIDDEN", error: "not yet" });
      return { event_id: "$late" };
    };
    await outbox.start();
    const entry = await outbox.enqueue(msg(ROOMS[0]!, 0));
    await expect(entry.delivered()).rejects.toBeInstanceOf(DeadLetterError);
    await outbox.onIdle();
    refuse = false;
    expect(await outbox.retry("all-dead")).toBe(1);
    await outbox.onIdle();
    expect(await store.get(entry.txnId)).toMatchObject({ state: "sent", eventId: "$late" });
    expect(transport.requests).toHaveLength(2);
  });

  test("a dead letter put back while its lane is still sending goes right after the head in flight", async () => {
    const { outbox, transport, store } = setup();
    const room = ROOMS[0]!;
    let release: () => void = () => {};
    transport.answer = async (req, n) => {
      if (n === 1) throw new MatrixError(403, { errcode: "M_FORBIDDEN", error: "not yet" });
      // The second request (m1) hangs until the dead letter has been put back.
      if (n === 2) await new Promise<void>((resolve) => (release = resolve));
      return { event_id: `$${req.body}` };
    };
    await outbox.start();
    const dead = await outbox.enqueue(msg(room, 0));
    await expect(dead.delivered()).rejects.toBeInstanceOf(DeadLetterError);
    for (let n = 1; n <= 3; n++) await outbox.enqueue(msg(room, n));
    await new Promise((r) => setImmediate(r));
    expect(transport.requests).toHaveLength(2); // m1 in flight
    expect(await store.requeue([dead.txnId])).toBe(1);
    await outbox.rescan();
    await outbox.rescan(); // a second rescan does not take the row twice
    release();
    await outbox.onIdle();
    expect(transport.bodiesFor(room).map((b) => JSON.parse(b).body)).toEqual(["m0", "m1", "m0", "m2", "m3"]);
    expect(await store.get(dead.txnId)).toMatchObject({ state: "sent" });
  });

  test("a request dropped through the outbox is not sent, even when its lane already holds it", async () => {
    const { outbox, transport, store } = setup();
    const room = ROOMS[0]!;
    let release: () => void = () => {};
    transport.answer = async (req, n) => {
      if (n === 1) await new Promise<void>((resolve) => (release = resolve));
      return { event_id: `$${req.body}` };
    };
    await outbox.start();
    const entries = [];
    for (let n = 0; n < 3; n++) entries.push(await outbox.enqueue(msg(room, n)));
    await new Promise((r) => setImmediate(r));
    expect(transport.requests).toHaveLength(1); // m0 in flight, m1 and m2 held in the lane
    expect(await outbox.drop([entries[1]!.txnId])).toBe(1);
    release();
    await outbox.onIdle();
    expect(transport.bodiesFor(room).map((b) => JSON.parse(b).body)).toEqual(["m0", "m2"]);
    await expect(entries[1]!.delivered()).rejects.toMatchObject({ errcode: "COURIER_DROPPED" });
    expect(await store.get(entries[1]!.txnId)).toMatchObject({ state: "dropped" });
    expect(await outbox.drop([entries[1]!.txnId])).toBe(0); // already dropped
  });

  test("a head dropped while it waits for its retry is not sent again; one the homeserver took stays sent", async () => {
    const { outbox, transport, store } = setup();
    const [first, second] = [ROOMS[0]!, ROOMS[1]!];
    const entries: Array<Awaited<ReturnType<typeof outbox.enqueue>>> = [];
    transport.answer = async (req) => {
      const dropped = entries.find((e) => req.path.includes(encodeURIComponent(e.txnId)));
      // Dropped while on the wire: the first fails (retried later), the second is accepted.
      if (dropped) expect(await outbox.drop([dropped.txnId])).toBe(1);
      if (req.path.includes(encodeURIComponent(first)))
        throw new MatrixError(502, { errcode: "M_UNKNOWN", error: "bad gateway" });
      return { event_id: "$taken" };
    };
    entries.push(await outbox.enqueue(msg(first, 0)), await outbox.enqueue(msg(second, 1)));
    await outbox.start();
    await outbox.onIdle();
    expect(transport.bodiesFor(first)).toHaveLength(1);
    await expect(entries[0]!.delivered()).rejects.toMatchObject({ errcode: "COURIER_DROPPED" });
    expect(await store.get(entries[0]!.txnId)).toMatchObject({ state: "dropped" });
    await expect(entries[1]!.delivered()).resolves.toMatchObject({ eventId: "$taken" });
    expect(await store.get(entries[1]!.txnId)).toMatchObject({ state: "sent" });
  });

  test("a 429 pauses only that sender, for retry_after_ms", async () => {
    const ghost = userId("@ghost:example.org");
    const { outbox, transport } = setup();
    const times: Array<[string, number]> = [];
    let limited = false;
    transport.answer = async (req) => {
      times.push([req.path.includes("ghost") ? "ghost" : "bot", Date.now()]);
      if (req.path.includes("ghost") && !limited) {
        limited = true;
        throw new MatrixError(429, { errcode: "M_LIMIT_EXCEEDED", retry_after_ms: 200 });
      }
      return { event_id: "$e" };
    };
    await outbox.start();
    const start = Date.now();
    await outbox.enqueue({ ...msg(ROOMS[0]!, 0), sender: ghost });
    await outbox.enqueue(msg(ROOMS[1]!, 1));
    await outbox.onIdle();
    const ghostTimes = times.filter(([who]) => who === "ghost").map(([, t]) => t - start);
    const botTimes = times.filter(([who]) => who === "bot").map(([, t]) => t - start);
    expect(ghostTimes).toHaveLength(2);
    expect(ghostTimes[1]! - ghostTimes[0]!).toBeGreaterThanOrEqual(190);
    expect(botTimes[0]!).toBeLessThan(ghostTimes[1]!);
  });

  test("the token bucket paces a sender", async () => {
    const { outbox, transport } = setup({ rate: { perSecond: 50, burst: 2 } });
    await outbox.start();
    const start = Date.now();
    await Promise.all(Array.from({ length: 6 }, (_, i) => outbox.enqueue(msg(ROOMS[i % 3]!, i))));
    await outbox.onIdle();
    expect(transport.requests).toHaveLength(6);
    // 2 at once, then 4 more at 50/s: at least ~80 ms.
    expect(Date.now() - start).toBeGreaterThanOrEqual(70);
  });

  test("oversized content is refused at enqueue and nothing is journaled", async () => {
    const { outbox, store } = setup();
    await expect(
      outbox.enqueue({ ...msg(ROOMS[0]!, 0), content: { body: "x".repeat(70_000) } }),
    ).rejects.toBeInstanceOf(EventTooLargeError);
    expect((await store.totals()).pending).toBe(0);
  });

  test("a backlog larger than the lane window is sent in order from the store", async () => {
    const { outbox, transport } = setup({ laneWindow: 4 });
    await Promise.all(Array.from({ length: 30 }, (_, i) => outbox.enqueue(msg(ROOMS[0]!, i))));
    await outbox.start();
    // More arrive while the lane is working through its windows.
    const later = Array.from({ length: 10 }, (_, i) => outbox.enqueue(msg(ROOMS[0]!, 30 + i)));
    await Promise.all(later);
    await outbox.onIdle();
    expect(transport.bodiesFor(ROOMS[0]!)).toEqual(
      Array.from({ length: 40 }, (_, i) => JSON.stringify({ msgtype: "m.text", body: `m${i}` })),
    );
  });

  test("many lanes share maxHeldRows: each loads its share of rows, and every lane is sent in order", async () => {
    const { outbox, transport, store } = setup({ laneWindow: 256, maxHeldRows: 48 });
    const limits: number[] = [];
    const loadLane = store.loadLane.bind(store);
    store.loadLane = (lane, afterSeq, limit) => (limits.push(limit), loadLane(lane, afterSeq, limit));
    const rooms = Array.from({ length: 6 }, (_, r) => roomId(`!share${r}:hs.test`));
    for (let i = 0; i < 40; i++) await Promise.all(rooms.map((room) => outbox.enqueue(msg(room, i))));
    await outbox.start();
    await outbox.onIdle();
    // Six lanes loaded at once: 48 / 6 = 8 rows each, raised to the floor of 16; never 256.
    expect(Math.max(...limits)).toBeLessThanOrEqual(48);
    expect(limits.filter((l) => l === 16).length).toBeGreaterThan(0);
    for (const room of rooms)
      expect(transport.bodiesFor(room).map((b) => JSON.parse(b).body)).toEqual(
        Array.from({ length: 40 }, (_, i) => `m${i}`),
      );
  });

  test("a stalled lane leaves new rows in the store, and sends them in order once it moves", async () => {
    const { outbox, transport, store } = setup({ stalledLaneMs: 20 });
    let loads = 0;
    const loadLane = store.loadLane.bind(store);
    store.loadLane = (...args) => (loads++, loadLane(...args));
    let release: () => void = () => {};
    transport.answer = async (req, n) => {
      if (n === 1) await new Promise<void>((resolve) => (release = resolve));
      return { event_id: `$${req.body}` };
    };
    await outbox.start();
    await outbox.enqueue(msg(ROOMS[0]!, 0));
    await outbox.enqueue(msg(ROOMS[0]!, 1)); // held: the head has not waited long
    await new Promise((r) => setTimeout(r, 60));
    for (let n = 2; n < 6; n++) await outbox.enqueue(msg(ROOMS[0]!, n)); // stalled: left in the store
    release();
    await outbox.onIdle();
    expect(transport.bodiesFor(ROOMS[0]!).map((b) => JSON.parse(b).body)).toEqual(
      Array.from({ length: 6 }, (_, n) => `m${n}`),
    );
    expect(loads).toBe(1); // the rows left in the store were read once the lane moved
  });

  test("a long lane gives its slot up after a few requests when another lane waits for one", async () => {
    const { outbox, transport } = setup({ maxConcurrency: 1 });
    await Promise.all(Array.from({ length: 40 }, (_, i) => outbox.enqueue(msg(ROOMS[0]!, i))));
    await outbox.enqueue(msg(ROOMS[1]!, 100));
    await outbox.start();
    await outbox.onIdle();
    const order = transport.requests.map((r) => (r.path.includes(encodeURIComponent(ROOMS[1]!)) ? "b" : "a"));
    // Room b's one request waits for at most one turn of room a (8 requests), not for all 40.
    expect(order.indexOf("b")).toBeLessThanOrEqual(8);
    expect(order.filter((x) => x === "a")).toHaveLength(40);
  });

  test("stop keeps pending rows; a new outbox on the same store replays them byte for byte", async () => {
    const { outbox, transport, store } = setup();
    transport.answer = () => new Promise(() => {}); // the homeserver never answers
    await outbox.start();
    const entries = await Promise.all([0, 1].map((i) => outbox.enqueue(msg(ROOMS[0]!, i))));
    const waiting = entries[1]!.delivered();
    await new Promise((r) => setTimeout(r, 10));
    await outbox.stop(50);
    await expect(waiting).rejects.toBeInstanceOf(OutboxStoppedError);
    const firstTry = transport.requests[0]!;

    const transport2 = new RecordingTransport();
    const outbox2 = new Outbox({
      store,
      transport: transport2,
      appserviceId: "test",
      botUserId: bot,
      rate: { perSecond: 1e6, burst: 1e6 },
    });
    await outbox2.start();
    await outbox2.onIdle();
    expect(transport2.requests).toHaveLength(2);
    expect(transport2.requests[0]).toEqual(firstTry);
  });

  test("cause scopes number sends in call order per target, even when fired concurrently", async () => {
    const a = setup();
    const b = setup();
    const fire = (outbox: Outbox) => {
      const scope = outbox.cause("$event");
      return Promise.all([
        scope.send(ROOMS[0]!, { body: "one" }),
        scope.send(ROOMS[1]!, { body: "other room" }),
        scope.send(ROOMS[0]!, { body: "two" }),
        scope.sendToDevice("m.test", { "@u:x": { D: { n: 1 } } }),
      ]);
    };
    const [first, second] = await Promise.all([fire(a.outbox), fire(b.outbox)]);
    expect(first.map((e) => e.txnId)).toEqual(second.map((e) => e.txnId));
    expect(new Set(first.map((e) => e.txnId)).size).toBe(4);
  });

  test("a large to-device map becomes several chunks with their own txnIds, one lane per sender", async () => {
    const { outbox, transport } = setup({ toDevice: { maxDevices: 10 } });
    await outbox.start();
    const messages: Record<string, Record<string, object>> = {};
    for (let u = 0; u < 5; u++)
      messages[`@u${u}:x`] = Object.fromEntries(Array.from({ length: 5 }, (_, d) => [`D${d}`, { u, d }]));
    const entry = await outbox.cause("$e").sendToDevice("m.test", messages);
    expect(entry.txnIds).toHaveLength(3);
    await expect(entry.delivered()).resolves.toMatchObject({ txnId: entry.txnId });
    expect(transport.requests.map((r) => r.path.split("?")[0]!.split("/").pop())).toEqual(entry.txnIds);
    expect(transport.requests[0]!.path).toMatch(/^\/_matrix\/client\/v3\/sendToDevice\/m\.test\/mc1[^?]+$/);
  });
});
