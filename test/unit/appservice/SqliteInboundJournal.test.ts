import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { openSqlite } from "../../../src/store/sqlite/SqliteDatabase.ts";
import { SqliteInboundJournal } from "../../../src/store/sqlite/SqliteInboundJournal.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import type { NewInboundItem } from "../../../src/store/InboundStore.ts";
import type { TxnId } from "../../../src/ids.ts";

const event = (id: string, room = "!a:x"): NewInboundItem => ({
  kind: "event",
  lane: `room:${room}`,
  eventId: id,
  json: JSON.stringify({ event_id: id, room_id: room, type: "m.room.message" }),
});

describe("SqliteInboundJournal", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "courier-inbound-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test("journals a transaction and its items in order; pending reads them in windows", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    const items = [event("$1"), event("$2", "!b:x"), event("$3")];
    expect(await journal.journal("1", "h1", items)).toEqual({ duplicate: false });
    const all = await journal.pending(0, 10);
    expect(all.map((i) => [i.txnId, i.eventId, i.lane, i.kind, i.attempts])).toEqual([
      ["1", "$1", "room:!a:x", "event", 0],
      ["1", "$2", "room:!b:x", "event", 0],
      ["1", "$3", "room:!a:x", "event", 0],
    ]);
    expect(all[0]!.json).toBe(items[0]!.json);
    const seqs = all.map((i) => i.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect((await journal.pending(seqs[0]!, 1)).map((i) => i.eventId)).toEqual(["$2"]);
    expect(await journal.pending(seqs[2]!, 10)).toEqual([]);
    await journal.close();
  });

  test("the same txnId and body hash is a duplicate and writes nothing", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    await journal.journal("1", "h1", [event("$1")]);
    expect(await journal.journal("1", "h1", [event("$1"), event("$other")])).toEqual({ duplicate: true });
    expect((await journal.pending(0, 10)).map((i) => i.eventId)).toEqual(["$1"]);
  });

  test("a reused txnId with a different body is a new transaction", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    await journal.journal("1", "h1", [event("$1")]);
    expect(await journal.journal("1", "h2", [event("$2")])).toEqual({ duplicate: false });
    expect((await journal.pending(0, 10)).map((i) => [i.txnId, i.eventId])).toEqual([
      ["1", "$1"],
      ["1", "$2"],
    ]);
  });

  test("an empty transaction is journaled, and deduplicated, like any other", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    expect(await journal.journal("e", "h", [])).toEqual({ duplicate: false });
    expect(await journal.journal("e", "h", [])).toEqual({ duplicate: true });
  });

  test("dedupe survives reopening the file, which is private to its owner", async () => {
    const path = join(dir, "db.sqlite");
    const first = new SqliteInboundJournal({ path });
    await first.journal("7", "h", [event("$1")]);
    await first.close();
    expect(statSync(path).mode & 0o077).toBe(0);
    const again = new SqliteInboundJournal({ path });
    expect(await again.journal("7", "h", [event("$1")])).toEqual({ duplicate: true });
    expect(await again.pending(0, 10)).toHaveLength(1);
    await again.close();
  });

  test("settle, recordAttempt and totals", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    await journal.journal("1", "h", [event("$1"), event("$2"), event("$3")]);
    const [a, b] = await journal.pending(0, 10);
    expect(await journal.recordAttempt(a!.seq)).toBe(1);
    expect(await journal.recordAttempt(a!.seq)).toBe(2);
    await journal.settle(a!.seq, "done");
    await journal.settle(b!.seq, "failed", "handler threw");
    await journal.settle(b!.seq, "done"); // the first outcome stays
    expect(await journal.totals()).toEqual({ pending: 1, done: 1, failed: 1 });
    expect((await journal.pending(0, 10)).map((i) => i.eventId)).toEqual(["$3"]);
    await expect(journal.recordAttempt(9999)).rejects.toThrow(/9999/);
  });

  test("a failed commit rejects and leaves nothing behind: the retry is not a duplicate", async () => {
    const db = openSqlite({ path: ":memory:" });
    const journal = new SqliteInboundJournal(db);
    db.exec(`CREATE TEMP TRIGGER boom BEFORE INSERT ON inbound_items WHEN NEW.lane = 'room:!boom:x'
             BEGIN SELECT RAISE(ABORT, 'boom'); END`);
    await expect(journal.journal("1", "h", [event("$1"), event("$2", "!boom:x")])).rejects.toThrow(/boom/);
    expect(db.isTransaction).toBe(false);
    expect(await journal.pending(0, 10)).toEqual([]);
    db.exec("DROP TRIGGER boom");
    expect(await journal.journal("1", "h", [event("$1"), event("$2", "!boom:x")])).toEqual({
      duplicate: false,
    });
    db.close();
  });

  test("a read-only database makes journal() reject", async () => {
    const path = join(dir, "db.sqlite");
    await new SqliteInboundJournal({ path }).close();
    const db = new DatabaseSync(path, { readOnly: true });
    const journal = new SqliteInboundJournal(db);
    await expect(journal.journal("1", "h", [event("$1")])).rejects.toThrow(/readonly/i);
    db.close();
  });

  test("a closed database makes journal() reject (not throw synchronously)", async () => {
    const db = openSqlite({ path: ":memory:" });
    const journal = new SqliteInboundJournal(db);
    db.close();
    const result = journal.journal("1", "h", [event("$1")]);
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
      journal.journal("1", "h", [event("$1")]),
    ]);
    expect(inserted[0]!.inserted).toBe(true);
    expect(await journal.pending(0, 10)).toHaveLength(1);
    await outbox.close();
    await journal.close(); // does not close a database it did not open
    expect(db.isOpen).toBe(true);
    db.close();
  });

  test("prune deletes settled items and finished transactions; seq never goes back", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    await journal.journal("1", "h", [event("$1"), event("$2")]);
    await journal.journal("2", "h", [event("$3")]);
    const [one, two, three] = await journal.pending(0, 10);
    await journal.settle(one!.seq, "done");
    await journal.settle(two!.seq, "failed", "x");
    await journal.settle(three!.seq, "done");
    expect(await journal.prune(0)).toEqual({ transactions: 0, items: 0 });
    expect(await journal.prune(Date.now() + 1000)).toEqual({ transactions: 2, items: 3 });
    expect(await journal.totals()).toEqual({ pending: 0, done: 0, failed: 0 });
    // A pruned transaction is forgotten: the same id and body is journaled anew.
    expect(await journal.journal("1", "h", [event("$4")])).toEqual({ duplicate: false });
    const [next] = await journal.pending(0, 10);
    expect(next!.seq).toBeGreaterThan(three!.seq);
  });

  test("prune keeps a transaction that still has pending items", async () => {
    const journal = new SqliteInboundJournal({ path: ":memory:" });
    await journal.journal("1", "h", [event("$1"), event("$2")]);
    const [one] = await journal.pending(0, 10);
    await journal.settle(one!.seq, "done");
    expect(await journal.prune(Date.now() + 1000)).toEqual({ transactions: 0, items: 1 });
    expect(await journal.journal("1", "h", [event("$1"), event("$2")])).toEqual({ duplicate: true });
  });
});
