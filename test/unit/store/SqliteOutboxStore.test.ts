import { hash } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import type { NewOutboxRow } from "../../../src/store/OutboxStore.ts";
import type { TxnId } from "../../../src/ids.ts";

const row = (txn: string, lane = "room:!a:x"): NewOutboxRow => ({
  txnId: txn as TxnId,
  lane,
  kind: "send",
  sender: "@bot:x",
  request: { method: "PUT", path: `/p/${txn}`, body: `{"n":"${txn}"}` },
});

// What the store does through its interface is checked on SQLite and PostgreSQL alike in
// test/integration/store/contract; here, what only SQLite has.
describe("SqliteOutboxStore", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "courier-store-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

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
      ALTER TABLE plugin_schedules DROP COLUMN running_holder;
      ALTER TABLE plugin_schedules DROP COLUMN running_until;
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

  test("the file is private to its owner", async () => {
    const path = join(dir, "db.sqlite");
    const store = new SqliteOutboxStore({ path });
    await store.insert([row("a")]);
    await store.close();
    expect(statSync(path).mode & 0o077).toBe(0);
  });
});
