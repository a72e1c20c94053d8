// The OutboxStore contract (src/store/OutboxStore.ts), on every store kind alike.
import type { TxnId } from "../../../../src/ids.ts";
import type { NewOutboxRow, OutboxStore, Settlement } from "../../../../src/store/OutboxStore.ts";
import { STORE_KINDS, useStores } from "./storeKinds.ts";

const LANE = "room:!a:x";
const row = (txn: string, lane = LANE): NewOutboxRow => ({
  txnId: txn as TxnId,
  lane,
  kind: "send",
  sender: "@bot:x",
  request: { method: "PUT", path: `/p/${txn}`, body: `{"n":"${txn}"}` },
});
const FORBIDDEN = { errcode: "M_FORBIDDEN", status: 403, reason: "no" };

const seqOf = async (store: OutboxStore, txnId: string) => (await store.get(txnId as TxnId))!.seq;
const sent = async (store: OutboxStore, txn: string, lane = LANE): Promise<Settlement> => ({
  seq: await seqOf(store, txn),
  txnId: txn as TxnId,
  lane,
  state: "sent",
  eventId: `$${txn}`,
  attempts: 1,
});
const dead = async (
  store: OutboxStore,
  txn: string,
  lane = LANE,
  error = FORBIDDEN,
): Promise<Settlement> => ({
  seq: await seqOf(store, txn),
  txnId: txn as TxnId,
  lane,
  state: "dead",
  error,
  attempts: 1,
});

describe.each(STORE_KINDS)("OutboxStore on $name", (kind) => {
  const stores = useStores(kind);
  const outbox = async () => (await stores.open()).outbox;

  test("inserts arriving together are journaled in the order they came, with seqs in that order", async () => {
    const store = await outbox();
    const results = await Promise.all([store.insert([row("a"), row("b")]), store.insert([row("c")])]);
    expect(results.flat().map((o) => [o.inserted, o.row.txnId, o.row.state, o.row.attempts])).toEqual([
      [true, "a", "pending", 0],
      [true, "b", "pending", 0],
      [true, "c", "pending", 0],
    ]);
    const seqs = results.flat().map((o) => o.row.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect(new Set(seqs).size).toBe(3);
    expect((await store.loadLane(LANE, 0, 10)).map((r) => [r.txnId, r.seq])).toEqual([
      ["a", seqs[0]],
      ["b", seqs[1]],
      ["c", seqs[2]],
    ]);
    expect(await store.insert([])).toEqual([]);
  });

  test("inserting an existing txnId is a no-op that returns the existing row", async () => {
    const store = await outbox();
    await store.insert([row("a")]);
    await store.settle([await sent(store, "a")]);
    const [again] = await store.insert([
      { ...row("a"), request: { method: "PUT", path: "/other", body: "{}" } },
    ]);
    expect(again).toMatchObject({
      inserted: false,
      row: { state: "sent", eventId: "$a", request: { path: "/p/a" } },
    });
    // The same txnId twice in one call: the second is the row the first journaled.
    const twice = await store.insert([row("b"), { ...row("b"), request: { method: "PUT", path: "/x" } }]);
    expect(twice.map((o) => [o.inserted, o.row.seq, o.row.request.path])).toEqual([
      [true, twice[0]!.row.seq, "/p/b"],
      [false, twice[0]!.row.seq, "/p/b"],
    ]);
    // The same txnId in two inserts at once: one journals it, the other is told of it.
    const [first, second] = await Promise.all([store.insert([row("c")]), store.insert([row("c")])]);
    expect([first![0]!.inserted, second![0]!.inserted]).toEqual([true, false]);
    expect(second![0]!.row.seq).toBe(first![0]!.row.seq);
    expect(await store.totals()).toEqual({ pending: 2, sent: 1, dead: 0 });
  });

  test("get sees a settlement before it is committed", async () => {
    const store = await outbox();
    await store.insert([row("a")]);
    void store.settle([await dead(store, "a")]);
    expect(await store.get("a" as TxnId)).toMatchObject({ state: "dead", error: FORBIDDEN, attempts: 1 });
    await store.flush();
    expect(await store.totals()).toEqual({ pending: 0, sent: 0, dead: 1 });
    expect(await store.get("nope" as TxnId)).toBeUndefined();
  });

  test("loads a lane in windows and survives reopening", async () => {
    const store = await outbox();
    await store.insert(Array.from({ length: 10 }, (_, i) => row(`t${i}`)));
    await store.insert([row("other", "room:!b:x")]);

    const reopened = (await stores.reopen()).outbox;
    expect((await reopened.pendingLanes()).sort()).toEqual(["room:!a:x", "room:!b:x"]);
    const first = await reopened.loadLane(LANE, 0, 4);
    expect(first.map((r) => r.txnId)).toEqual(["t0", "t1", "t2", "t3"]);
    const next = await reopened.loadLane(LANE, first[3]!.seq, 4);
    expect(next.map((r) => r.txnId)).toEqual(["t4", "t5", "t6", "t7"]);
    expect(next[0]).toMatchObject({
      request: { method: "PUT", path: "/p/t4", body: '{"n":"t4"}' },
      lane: LANE,
      kind: "send",
      sender: "@bot:x",
      state: "pending",
      attempts: 0,
      eventId: undefined,
      error: undefined,
      settledAt: undefined,
    });
    expect(await reopened.laneStats()).toEqual([
      { lane: "room:!a:x", pending: 10, oldestCreatedAt: expect.any(Number) },
      { lane: "room:!b:x", pending: 1, oldestCreatedAt: expect.any(Number) },
    ]);
    expect(await reopened.loadLane("room:!none:x", 0, 4)).toEqual([]);
  });

  test("a lane's windows follow inserts, settlements, and an operator's drops and requeues", async () => {
    const store = await outbox();
    const txnIds = async (afterSeq: number, limit = 100) =>
      (await store.loadLane(LANE, afterSeq, limit)).map((r) => r.txnId);
    await store.insert(Array.from({ length: 6 }, (_, i) => row(`t${i}`)));
    await store.insert([row("elsewhere", "room:!b:x")]);
    expect(await txnIds(0)).toEqual(["t0", "t1", "t2", "t3", "t4", "t5"]);
    void store.settle([await sent(store, "t0")]); // buffered: no longer pending for the caller
    await store.insert([row("t6")]);
    expect(await txnIds(0)).toEqual(["t1", "t2", "t3", "t4", "t5", "t6"]);
    expect(await txnIds(await seqOf(store, "t2"), 2)).toEqual(["t3", "t4"]);

    // An operator (through the service, or the CLI while it is down) drops one row and puts a dead one back.
    await store.settle([await dead(store, "t1")]);
    expect(await txnIds(0)).toEqual(["t2", "t3", "t4", "t5", "t6"]);
    expect(await store.drop(["t4" as TxnId])).toBe(1);
    expect(await store.requeue(["t1" as TxnId])).toBe(1);
    expect(await txnIds(0)).toEqual(["t1", "t2", "t3", "t5", "t6"]);
    // A window of 3 is 3 pending rows, whatever was dropped in between.
    expect(await txnIds(await seqOf(store, "t2"), 3)).toEqual(["t3", "t5", "t6"]);
  });

  test("a dropped row is kept and never pending again; the homeserver's acceptance of it still counts", async () => {
    const store = await outbox();
    await store.insert([row("a"), row("b"), row("c")]);
    await store.settle([await dead(store, "c")]);
    const late = await sent(store, "a"); // on its way when the operator dropped it
    const failed = await dead(store, "b");
    expect(await store.drop(["a", "b", "c", "nope"] as TxnId[])).toBe(3);
    expect(await store.drop(["a"] as TxnId[])).toBe(0);
    expect(await store.get("b" as TxnId)).toMatchObject({ state: "dropped", settledAt: expect.any(Number) });
    await store.settle([late, failed]);
    expect(await store.get("a" as TxnId)).toMatchObject({ state: "sent", eventId: "$a" });
    expect(await store.get("b" as TxnId)).toMatchObject({ state: "dropped", error: undefined });
    expect(await store.requeue("all-dead")).toBe(0);
    expect(await store.loadLane(LANE, 0, 10)).toEqual([]);
    expect(await store.totals()).toEqual({ pending: 0, sent: 1, dead: 0 });
  });

  test("a dead letter's reason is kept whatever characters it holds", async () => {
    const store = await outbox();
    await store.insert([row("a")]);
    const error = { errcode: "M_UNKNOWN", status: 500, reason: 'a user\'s "text": é 🎉 \\u0000 \u0000 end' };
    await store.settle([await dead(store, "a", LANE, error)]);
    // PostgreSQL's text and jsonb cannot hold NUL: it shows U+FFFD there (withoutNul).
    const kept =
      kind.name === "postgres" ? { ...error, reason: error.reason.replace("\u0000", "\uFFFD") } : error;
    expect(await store.get("a" as TxnId)).toMatchObject({ state: "dead", error: kept });
    await expect((await stores.reopen()).outbox.get("a" as TxnId)).resolves.toMatchObject({ error: kept });
  });

  test("list filters by state and lane, newest first", async () => {
    const store = await outbox();
    await store.insert([row("a"), row("b", "room:!b:x"), row("c"), row("d")]);
    await store.settle([await dead(store, "a"), await dead(store, "b", "room:!b:x"), await sent(store, "c")]);
    const txnIds = (rows: ReadonlyArray<{ txnId: string }>) => rows.map((r) => r.txnId);
    expect(txnIds(await store.list({ limit: 10 }))).toEqual(["d", "c", "b", "a"]);
    expect(txnIds(await store.list({ limit: 2 }))).toEqual(["d", "c"]);
    expect(txnIds(await store.list({ state: "dead", limit: 10 }))).toEqual(["b", "a"]);
    expect(txnIds(await store.list({ state: "dead", lane: LANE, limit: 10 }))).toEqual(["a"]);
    expect(txnIds(await store.list({ lane: "room:!b:x", limit: 10 }))).toEqual(["b"]);
    expect(await store.list({ lane: "room:!none:x", limit: 10 })).toEqual([]);
    expect((await store.list({ state: "dead", lane: LANE, limit: 10 }))[0]).toMatchObject({
      error: FORBIDDEN,
      settledAt: expect.any(Number),
    });
  });

  test("requeue puts dead rows back; prune removes old settled rows only", async () => {
    const store = await outbox();
    await store.insert([row("a"), row("b"), row("c")]);
    await store.settle([await dead(store, "a"), await sent(store, "b")]);
    expect((await store.list({ state: "dead", limit: 10 })).map((r) => r.txnId)).toEqual(["a"]);
    expect(await store.requeue(["a" as TxnId, "b" as TxnId])).toBe(1);
    expect(await store.get("a" as TxnId)).toMatchObject({ state: "pending", error: undefined });
    expect(await store.prune(0)).toBe(0);
    expect(await store.prune(Date.now() + 1000)).toBe(1);
    expect(await store.get("b" as TxnId)).toBeUndefined();
    expect(await store.totals()).toEqual({ pending: 2, sent: 0, dead: 0 });
    await store.settle([await dead(store, "a"), await dead(store, "c")]);
    expect(await store.requeue("all-dead")).toBe(2);
    expect(await store.totals()).toEqual({ pending: 2, sent: 0, dead: 0 });
  });

  test("a read waits for what was submitted before it, not for inserts that keep coming", async () => {
    const store = await outbox();
    // A bounded stream of inserts, each resolved one submitting the next: two always in flight.
    const TOTAL = 200;
    let submitted = 0;
    let done = 0;
    const stream = new Promise<void>((resolve, reject) => {
      const next = () => {
        if (submitted === TOTAL) return;
        const n = submitted++;
        store.insert([row(`s${n}`)]).then(() => {
          if (++done === TOTAL) resolve();
          next();
        }, reject);
      };
      next();
      next();
    });
    await store.insert([row("before")]);
    const totals = await store.totals();
    const doneAtRead = done;
    await stream;
    expect(doneAtRead).toBeLessThan(TOTAL);
    expect(totals.pending).toBeGreaterThanOrEqual(1);
    expect(await store.totals()).toEqual({ pending: TOTAL + 1, sent: 0, dead: 0 });
  });

  test("a failed commit rejects the inserts and keeps nothing half-written", async () => {
    const store = await outbox();
    const bad = { ...row("x"), lane: null as unknown as string }; // the lane column is NOT NULL
    await expect(store.insert([row("ok"), bad])).rejects.toThrow();
    expect(await store.totals()).toEqual({ pending: 0, sent: 0, dead: 0 });
    expect(await store.get("ok" as TxnId)).toBeUndefined();
    await expect(store.insert([row("ok")])).resolves.toMatchObject([{ inserted: true }]);
    expect(await store.pendingLanes()).toEqual([LANE]);
  });
});
