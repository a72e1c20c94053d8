import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { openSqlite } from "../../../src/store/sqlite/SqliteDatabase.ts";
import { SqliteInboundJournal } from "../../../src/store/sqlite/SqliteInboundJournal.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import type { NewInboundItem } from "../../../src/inbound/InboundJournal.ts";
import type { TxnId } from "../../../src/ids.ts";

const event = (id: string, room = "!a:x"): NewInboundItem => ({
  kind: "event",
  lane: `room:${room}`,
  key: `event:${id}`,
  eventId: id,
  json: JSON.stringify({ event_id: id, room_id: room, type: "m.room.message" }),
});
const rejected = (key: string, reason: string): NewInboundItem => ({
  kind: "event",
  lane: "room:unknown",
  key,
  eventId: undefined,
  json: "{}",
  rejected: reason,
});
const ids = async (journal: SqliteInboundJournal) =>
  (await journal.pending(0, 100)).items.map((i) => i.eventId);

describe("SqliteInboundJournal", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "courier-inbound-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test("journals a transaction's items in order and returns them; pending reads them in windows", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    const items = [event("$1"), event("$2", "!b:x"), event("$3")];
    const outcome = await journal.journal("1", items);
    expect(outcome).toMatchObject({ rejected: 0, duplicates: 0, afterSeq: 0, upToSeq: 3 });
    const { items: all, readUpTo } = await journal.pending(0, 10);
    expect(readUpTo).toBe(3);
    expect(outcome.items).toEqual(all);
    // The first dispatch is counted as the item is journaled.
    expect(all.map((i) => [i.txnId, i.eventId, i.lane, i.kind, i.key, i.attempts])).toEqual([
      ["1", "$1", "room:!a:x", "event", "event:$1", 1],
      ["1", "$2", "room:!b:x", "event", "event:$2", 1],
      ["1", "$3", "room:!a:x", "event", "event:$3", 1],
    ]);
    expect(await journal.lastSeq()).toBe(3);
    expect(all[0]!.json).toBe(items[0]!.json);
    const seqs = all.map((i) => i.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    const window = await journal.pending(seqs[0]!, 1);
    expect([window.items.map((i) => i.eventId), window.readUpTo]).toEqual([["$2"], seqs[1]]);
    expect(await journal.pending(seqs[2]!, 10)).toEqual({ items: [], readUpTo: 3 });
    await journal.close();
  });

  test("an item is journaled once per key, whatever transaction carries it", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    await journal.journal("1", [event("$1"), event("$2")]);
    // Synapse's retry of the same transaction: the same event ids, re-serialised.
    const retry = await journal.journal("1", [event("$1"), event("$2")]);
    expect(retry).toMatchObject({ items: [], duplicates: 2, afterSeq: 2 });
    // Another transaction carrying one of them, and a new one.
    const other = await journal.journal("2", [event("$2"), event("$3")]);
    expect(other.items.map((i) => i.eventId)).toEqual(["$3"]);
    expect(other.duplicates).toBe(1);
    expect(await ids(journal)).toEqual(["$1", "$2", "$3"]);
  });

  test("a reused txnId with new events journals them (a homeserver whose counter was reset)", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    await journal.journal("1", [event("$1")]);
    expect((await journal.journal("1", [event("$2")])).items.map((i) => [i.txnId, i.eventId])).toEqual([
      ["1", "$2"],
    ]);
    expect(await ids(journal)).toEqual(["$1", "$2"]);
  });

  test("rejected items are kept with their reason, take a seq, and are never pending", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    const outcome = await journal.journal("1", [event("$1"), rejected("bad:1", "no content"), event("$2")]);
    expect(outcome).toMatchObject({ rejected: 1, afterSeq: 0, upToSeq: 3 });
    expect(outcome.items.map((i) => i.eventId)).toEqual(["$1", "$2"]);
    expect(await ids(journal)).toEqual(["$1", "$2"]);
    expect(await journal.list({ state: "rejected", limit: 10 })).toEqual([
      expect.objectContaining({ seq: 2, state: "rejected", error: "no content", txnId: "1" }),
    ]);
    expect(await journal.totals()).toEqual({ pending: 2, done: 0, dead: 0, rejected: 1 });
    // The same rejected item again is a duplicate, like any other.
    expect(await journal.journal("1", [rejected("bad:1", "no content")])).toMatchObject({
      rejected: 0,
      duplicates: 1,
    });
  });

  test("dedupe survives reopening the file, which is private to its owner", async () => {
    const path = join(dir, "db.sqlite");
    const first = new SqliteInboundJournal({ path });
    await first.journal("7", [event("$1")]);
    await first.close();
    expect(statSync(path).mode & 0o077).toBe(0);
    const again = new SqliteInboundJournal({ path });
    expect(await again.journal("8", [event("$1")])).toMatchObject({ items: [], duplicates: 1 });
    expect(await ids(again)).toEqual(["$1"]);
    await again.close();
  });

  test("record counts begun dispatches and settles outcomes in one commit; the first outcome stays", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    await journal.journal("1", [event("$1"), event("$2"), event("$3")]);
    const [a, b] = (await journal.pending(0, 10)).items;
    await journal.record({ begun: [a!.seq, b!.seq, a!.seq], settled: [] });
    expect((await journal.pending(0, 10)).items.map((i) => i.attempts)).toEqual([3, 2, 1]);
    await journal.record({
      begun: [],
      settled: [
        { seq: a!.seq, state: "done" },
        { seq: b!.seq, state: "dead", error: "handler threw" },
      ],
    });
    await journal.record({ begun: [b!.seq], settled: [{ seq: b!.seq, state: "done" }] });
    expect(await journal.totals()).toEqual({ pending: 1, done: 1, dead: 1, rejected: 0 });
    expect(await ids(journal)).toEqual(["$3"]);
    expect(await journal.list({ state: "dead", limit: 10 })).toEqual([
      expect.objectContaining({ eventId: "$2", attempts: 2, error: "handler threw" }),
    ]);
    expect((await journal.list({ limit: 10 })).map((r) => [r.eventId, r.state])).toEqual([
      ["$2", "dead"],
      ["$1", "done"],
    ]);
    expect((await journal.list({ state: "done", limit: 10 })).map((r) => r.eventId)).toEqual(["$1"]);
  });

  test("a failed record commits nothing of its batch", async () => {
    const db = openSqlite({ path: ":memory:" });
    const journal = new SqliteInboundJournal(db);
    await journal.journal("1", [event("$1"), event("$2")]);
    db.exec(`CREATE TEMP TRIGGER boom BEFORE UPDATE OF state ON inbound_items WHEN NEW.state = 'dead'
             BEGIN SELECT RAISE(ABORT, 'boom'); END`);
    await expect(
      journal.record({
        begun: [1],
        settled: [
          { seq: 1, state: "done" },
          { seq: 2, state: "dead" },
        ],
      }),
    ).rejects.toThrow(/boom/);
    expect(db.isTransaction).toBe(false);
    expect((await journal.pending(0, 10)).items.map((i) => i.attempts)).toEqual([1, 1]);
    db.close();
  });

  test("pendingInLane reads one lane's pending items in a seq range", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    await journal.journal("1", [event("$1"), event("$2", "!b:x"), event("$3"), event("$4"), event("$5")]);
    const read = (after: number, upTo: number, limit: number) =>
      journal.pendingInLane("room:!a:x", after, upTo, limit).then((items) => items.map((i) => i.eventId));
    expect(await read(0, 5, 10)).toEqual(["$1", "$3", "$4", "$5"]);
    expect(await read(1, 4, 10)).toEqual(["$3", "$4"]);
    expect(await read(1, 5, 1)).toEqual(["$3"]);
  });

  test("a failed commit rejects and leaves nothing behind: the retry journals everything", async () => {
    const db = openSqlite({ path: ":memory:" });
    const journal = new SqliteInboundJournal(db);
    db.exec(`CREATE TEMP TRIGGER boom BEFORE INSERT ON inbound_items WHEN NEW.lane = 'room:!boom:x'
             BEGIN SELECT RAISE(ABORT, 'boom'); END`);
    await expect(journal.journal("1", [event("$1"), event("$2", "!boom:x")])).rejects.toThrow(/boom/);
    expect(db.isTransaction).toBe(false);
    expect(await ids(journal)).toEqual([]);
    db.exec("DROP TRIGGER boom");
    expect((await journal.journal("1", [event("$1"), event("$2", "!boom:x")])).items).toHaveLength(2);
    db.close();
  });

  test("a read-only database makes journal() reject", async () => {
    const path = join(dir, "db.sqlite");
    await new SqliteInboundJournal({ path }).close();
    const db = new DatabaseSync(path, { readOnly: true });
    const journal = new SqliteInboundJournal(db);
    await expect(journal.journal("1", [event("$1")])).rejects.toThrow(/readonly/i);
    db.close();
  });

  test("a closed database makes journal() reject (not throw synchronously)", async () => {
    const db = openSqlite({ path: ":memory:" });
    const journal = new SqliteInboundJournal(db);
    db.close();
    const result = journal.journal("1", [event("$1")]);
    await expect(result).rejects.toThrow();
  });

  test("shares one connection with the outbox store", async () => {
    const db = openSqlite({ path: join(dir, "db.sqlite") });
    const journal = new SqliteInboundJournal(db);
    const outbox = new SqliteOutboxStore(db);
    const [inserted] = await Promise.all([
      outbox.insert([
        {
          txnId: "t" as TxnId,
          lane: "room:!a:x",
          kind: "send",
          sender: "@b:x",
          request: { method: "PUT", path: "/p", body: "{}" },
        },
      ]),
      journal.journal("1", [event("$1")]),
    ]);
    expect(inserted[0]!.inserted).toBe(true);
    expect(await ids(journal)).toHaveLength(1);
    await outbox.close();
    await journal.close(); // does not close a database it did not open
    expect(db.isOpen).toBe(true);
    db.close();
  });

  test("prune deletes settled items, pending ones stay; seq never goes back", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    await journal.journal("1", [event("$1"), event("$2"), rejected("bad", "x")]);
    await journal.journal("2", [event("$3"), event("$4")]);
    const [one, two, three] = (await journal.pending(0, 10)).items;
    await journal.record({
      begun: [],
      settled: [
        { seq: one!.seq, state: "done" },
        { seq: two!.seq, state: "dead", error: "x" },
        { seq: three!.seq, state: "done" },
      ],
    });
    expect(await journal.prune(0)).toBe(0);
    expect(await journal.prune(Date.now() + 1000)).toBe(4);
    expect(await journal.totals()).toEqual({ pending: 1, done: 0, dead: 0, rejected: 0 });
    // A pruned event is forgotten: sent again, it is journaled anew (after the retention period).
    const again = await journal.journal("1", [event("$1")]);
    expect(again.items[0]!.seq).toBeGreaterThan(5);
    expect(again.afterSeq).toBe(5);
  });

  test("upgrading a journal of schema 6: keys from event ids, a duplicate journaled twice by the old rule kept apart, pending items listed, seq never goes back", async () => {
    const path = join(dir, "old.sqlite");
    const db = openSqlite({ path });
    db.exec(`DROP TABLE inbound_items; DROP TABLE inbound_pending;
      CREATE TABLE inbound_items (seq INTEGER PRIMARY KEY AUTOINCREMENT, txn_id TEXT NOT NULL, kind TEXT NOT NULL,
        lane TEXT NOT NULL, event_id TEXT, json TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0, error TEXT, settled_at INTEGER);
      CREATE INDEX inbound_items_pending ON inbound_items (seq) WHERE state = 'pending';
      CREATE TABLE inbound_txns (txn_id TEXT NOT NULL, body_hash TEXT NOT NULL, received_at INTEGER NOT NULL,
        PRIMARY KEY (txn_id, body_hash)) WITHOUT ROWID;
      INSERT INTO inbound_txns VALUES ('1', 'h1', 1000), ('1', 'h2', 2000);
      INSERT INTO inbound_items (txn_id, kind, lane, event_id, json, state, attempts, error) VALUES
        ('1', 'event', 'room:!a:x', '$1', '{}', 'done', 1, NULL),
        ('1', 'event', 'room:!a:x', '$1', '{}', 'failed', 2, 'boom'),
        ('1', 'toDevice', 'todevice:@u:x', NULL, '{}', 'pending', 1, NULL),
        ('1', 'event', 'room:!a:x', '$9', '{}', 'done', 1, NULL);
      DELETE FROM inbound_items WHERE seq = 4;
      PRAGMA user_version = 6;`);
    db.close();
    const journal = new SqliteInboundJournal({ path });
    expect((await journal.list({ limit: 10 })).map((r) => [r.seq, r.eventId, r.state, r.error])).toEqual([
      [2, "$1", "dead", "boom"],
      [1, "$1", "done", undefined],
    ]);
    expect(await journal.totals()).toEqual({ pending: 1, done: 1, dead: 1, rejected: 0 });
    const { items } = await journal.pending(0, 10);
    expect(items.map((i) => [i.seq, i.key, i.attempts])).toEqual([[3, "legacy:3", 1]]);
    expect(await journal.journal("2", [event("$1")])).toMatchObject({ items: [], duplicates: 1 });
    // The pruned row 4 keeps its seq: the next item comes after it.
    const next = await journal.journal("3", [event("$5")]);
    expect(next.items[0]!.seq).toBeGreaterThan(4);
    expect(next.upToSeq).toBe(next.items[0]!.seq);
    await journal.close();
  });
});
