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
const ids = async (journal: SqliteInboundJournal) =>
  (await journal.pending(0, 100)).items.map((i) => i.eventId);

// What the journal does through its interface is checked on SQLite and PostgreSQL alike in
// test/integration/store/contract; here, what only SQLite has.
describe("SqliteInboundJournal", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "courier-inbound-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test("the file is private to its owner", async () => {
    const path = join(dir, "db.sqlite");
    const journal = new SqliteInboundJournal({ path });
    await journal.journal("7", [event("$1")]);
    await journal.close();
    expect(statSync(path).mode & 0o077).toBe(0);
  });

  test("a failed commit leaves the shared connection out of its transaction", async () => {
    const db = openSqlite({ path: ":memory:" });
    const journal = new SqliteInboundJournal(db);
    await journal.journal("1", [event("$1"), event("$2")]);
    db.exec(`CREATE TEMP TRIGGER boom BEFORE INSERT ON inbound_items BEGIN SELECT RAISE(ABORT, 'boom'); END;
             CREATE TEMP TRIGGER boom_dead BEFORE UPDATE OF state ON inbound_items BEGIN SELECT RAISE(ABORT, 'boom'); END`);
    await expect(journal.journal("2", [event("$3")])).rejects.toThrow(/boom/);
    expect(db.isTransaction).toBe(false);
    await expect(journal.record({ begun: [1], settled: [{ seq: 2, state: "dead" }] })).rejects.toThrow(
      /boom/,
    );
    expect(db.isTransaction).toBe(false);
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
      ALTER TABLE plugin_schedules DROP COLUMN running_holder;
      ALTER TABLE plugin_schedules DROP COLUMN running_until;
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
