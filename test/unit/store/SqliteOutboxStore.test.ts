import { hash } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import type { NewOutboxRow, Settlement } from "../../../src/store/OutboxStore.ts";
import type { TxnId } from "../../../src/ids.ts";

const row = (txn: string, lane = "room:!a:x"): NewOutboxRow => ({
  txnId: txn as TxnId,
  lane,
  kind: "send",
  sender: "@bot:x",
  request: { method: "PUT", path: `/p/${txn}`, body: `{"n":"${txn}"}` },
});

const seqOf = async (store: SqliteOutboxStore, txnId: string) => (await store.get(txnId as TxnId))!.seq;

describe("SqliteOutboxStore", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "courier-store-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test("inserts arriving in one tick share one commit and keep their order", async () => {
    const store = new SqliteOutboxStore({ path: join(dir, "db.sqlite") });
    const results = await Promise.all([store.insert([row("a"), row("b")]), store.insert([row("c")])]);
    expect(results.flat().map((o) => [o.inserted, o.row.txnId])).toEqual([
      [true, "a"],
      [true, "b"],
      [true, "c"],
    ]);
    const seqs = results.flat().map((o) => o.row.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    await store.close();
  });

  test("a journal of schema 3 (txn_key hashed again) still dedupes after the upgrade", async () => {
    const path = join(dir, "old.sqlite");
    const store = new SqliteOutboxStore({ path });
    await store.insert([row("mc1" + "A".repeat(43)), row("plain")]);
    await store.close();
    // Put the database back as schema 3 left it: its table (UNIQUE on the column), every key a
    // hash of the txnId.
    const old = new DatabaseSync(path);
    old.exec(`ALTER TABLE outbox RENAME TO outbox_v4;
      CREATE TABLE outbox (seq INTEGER PRIMARY KEY, txn_key INTEGER NOT NULL UNIQUE, txn_id TEXT NOT NULL,
        lane_id INTEGER NOT NULL REFERENCES outbox_lanes (id), kind TEXT NOT NULL, sender TEXT NOT NULL,
        method TEXT NOT NULL, path TEXT NOT NULL, body TEXT, state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0, event_id TEXT, error TEXT, created_at INTEGER NOT NULL,
        settled_at INTEGER);
      INSERT INTO outbox SELECT * FROM outbox_v4;
      DROP TABLE outbox_v4;
      CREATE INDEX outbox_pending ON outbox (lane_id, seq) WHERE state = 'pending';
      DROP TABLE inbound_items;
      DROP TABLE inbound_pending;
      CREATE TABLE inbound_items (seq INTEGER PRIMARY KEY AUTOINCREMENT, txn_id TEXT NOT NULL, kind TEXT NOT NULL,
        lane TEXT NOT NULL, event_id TEXT, json TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0, error TEXT, settled_at INTEGER);
      CREATE TABLE inbound_txns (txn_id TEXT NOT NULL, body_hash TEXT NOT NULL, received_at INTEGER NOT NULL,
        PRIMARY KEY (txn_id, body_hash)) WITHOUT ROWID;
      PRAGMA user_version = 3;`);
    const rows = old.prepare("SELECT seq, txn_id FROM outbox").all() as Array<{
      seq: number;
      txn_id: string;
    }>;
    for (const { seq, txn_id } of rows) {
      const key = hash("sha256", txn_id, "buffer").readBigInt64BE(0);
      old.prepare("UPDATE outbox SET txn_key = ? WHERE seq = ?").run(key, seq);
    }
    old.close();
    const upgraded = new SqliteOutboxStore({ path });
    const again = await upgraded.insert([row("mc1" + "A".repeat(43)), row("plain")]);
    expect(again.map((o) => o.inserted)).toEqual([false, false]);
    expect(await upgraded.get(("mc1" + "A".repeat(43)) as TxnId)).toMatchObject({ state: "pending" });
    expect(await upgraded.insert([row("new")])).toMatchObject([{ inserted: true, row: { seq: 3 } }]);
    await upgraded.close();
  });

  test("inserting an existing txnId is a no-op that returns the existing row", async () => {
    const store = new SqliteOutboxStore({ path: ":memory:" });
    await store.insert([row("a")]);
    await store.settle([
      {
        seq: await seqOf(store, "a"),
        txnId: "a" as TxnId,
        lane: "room:!a:x",
        state: "sent",
        eventId: "$e",
        attempts: 1,
      },
    ]);
    const [again] = await store.insert([
      { ...row("a"), request: { method: "PUT", path: "/other", body: "{}" } },
    ]);
    expect(again).toMatchObject({
      inserted: false,
      row: { state: "sent", eventId: "$e", request: { path: "/p/a" } },
    });
  });

  test("get sees a settlement before it is committed", async () => {
    const store = new SqliteOutboxStore({ path: ":memory:" });
    await store.insert([row("a")]);
    void store.settle([
      {
        seq: await seqOf(store, "a"),
        txnId: "a" as TxnId,
        lane: "room:!a:x",
        state: "dead",
        error: { errcode: "M_FORBIDDEN", status: 403, reason: "no" },
        attempts: 1,
      },
    ]);
    expect(await store.get("a" as TxnId)).toMatchObject({ state: "dead", error: { errcode: "M_FORBIDDEN" } });
    await store.flush();
    expect(await store.totals()).toEqual({ pending: 0, sent: 0, dead: 1 });
  });

  test("loads a lane in windows and survives reopening", async () => {
    const path = join(dir, "db.sqlite");
    const store = new SqliteOutboxStore({ path });
    await store.insert(Array.from({ length: 10 }, (_, i) => row(`t${i}`)));
    await store.insert([row("other", "room:!b:x")]);
    await store.close();
    expect(statSync(path).mode & 0o077).toBe(0);

    const reopened = new SqliteOutboxStore({ path });
    expect((await reopened.pendingLanes()).sort()).toEqual(["room:!a:x", "room:!b:x"]);
    const first = await reopened.loadLane("room:!a:x", 0, 4);
    expect(first.map((r) => r.txnId)).toEqual(["t0", "t1", "t2", "t3"]);
    const next = await reopened.loadLane("room:!a:x", first[3]!.seq, 4);
    expect(next.map((r) => r.txnId)).toEqual(["t4", "t5", "t6", "t7"]);
    expect(next[0]!.request).toEqual({ method: "PUT", path: "/p/t4", body: '{"n":"t4"}' });
    expect(await reopened.laneStats()).toEqual([
      { lane: "room:!a:x", pending: 10, oldestCreatedAt: expect.any(Number) },
      { lane: "room:!b:x", pending: 1, oldestCreatedAt: expect.any(Number) },
    ]);
    await reopened.close();
  });

  test("a lane's windows follow inserts, settlements, and an operator's drops and requeues", async () => {
    const path = join(dir, "db.sqlite");
    const store = new SqliteOutboxStore({ path });
    const lane = "room:!a:x";
    const txnIds = async (afterSeq: number, limit = 100) =>
      (await store.loadLane(lane, afterSeq, limit)).map((r) => r.txnId);
    await store.insert(Array.from({ length: 6 }, (_, i) => row(`t${i}`)));
    await store.insert([row("elsewhere", "room:!b:x")]);
    expect(await txnIds(0)).toEqual(["t0", "t1", "t2", "t3", "t4", "t5"]);
    const settle = (txn: string, seq: number): Settlement => ({
      seq,
      txnId: txn as TxnId,
      lane,
      state: "sent",
      eventId: "$e",
      attempts: 1,
    });
    void store.settle([settle("t0", 1)]); // buffered: no longer pending for the caller
    await store.insert([row("t6")]);
    expect(await txnIds(0)).toEqual(["t1", "t2", "t3", "t4", "t5", "t6"]);
    expect(await txnIds(3, 2)).toEqual(["t3", "t4"]);

    // An operator (through the service, or the CLI while it is down) drops one row and puts a dead one back.
    const dead = { errcode: "M_FORBIDDEN", status: 403, reason: "no" };
    await store.settle([{ seq: 2, txnId: "t1" as TxnId, lane, state: "dead", error: dead, attempts: 1 }]);
    expect(await txnIds(0)).toEqual(["t2", "t3", "t4", "t5", "t6"]);
    expect(await store.drop(["t4" as TxnId])).toBe(1);
    expect(await store.requeue(["t1" as TxnId])).toBe(1);
    expect(await txnIds(0)).toEqual(["t1", "t2", "t3", "t5", "t6"]);
    // A window of 3 is 3 pending rows, whatever was dropped in between.
    expect(await txnIds(3, 3)).toEqual(["t3", "t5", "t6"]);
    await store.close();
  });

  test("requeue puts dead rows back; prune removes old settled rows only", async () => {
    const store = new SqliteOutboxStore({ path: ":memory:" });
    await store.insert([row("a"), row("b"), row("c")]);
    const dead = { errcode: "M_FORBIDDEN", status: 403, reason: "no" };
    await store.settle([
      {
        seq: await seqOf(store, "a"),
        txnId: "a" as TxnId,
        lane: "room:!a:x",
        state: "dead",
        error: dead,
        attempts: 1,
      },
      {
        seq: await seqOf(store, "b"),
        txnId: "b" as TxnId,
        lane: "room:!a:x",
        state: "sent",
        eventId: "$b",
        attempts: 1,
      },
    ]);
    expect((await store.list({ state: "dead", limit: 10 })).map((r) => r.txnId)).toEqual(["a"]);
    expect(await store.requeue(["a" as TxnId, "b" as TxnId])).toBe(1);
    expect(await store.get("a" as TxnId)).toMatchObject({ state: "pending", error: undefined });
    expect(await store.prune(Date.now() + 1000)).toBe(1);
    expect(await store.totals()).toEqual({ pending: 2, sent: 0, dead: 0 });
  });

  test("a failed commit rejects the inserts and keeps nothing half-written", async () => {
    const store = new SqliteOutboxStore({ path: ":memory:" });
    const bad = { ...row("x"), lane: null as unknown as string };
    await expect(store.insert([row("ok"), bad])).rejects.toThrow();
    expect(await store.totals()).toEqual({ pending: 0, sent: 0, dead: 0 });
    await expect(store.insert([row("ok")])).resolves.toHaveLength(1);
  });
});
