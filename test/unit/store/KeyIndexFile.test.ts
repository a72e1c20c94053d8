import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteInboundJournal } from "../../../src/store/sqlite/SqliteInboundJournal.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import { txnKey } from "../../../src/store/sqlite/txnKey.ts";
import type { NewOutboxRow } from "../../../src/store/OutboxStore.ts";
import type { NewInboundItem } from "../../../src/inbound/InboundJournal.ts";
import type { TxnId } from "../../../src/ids.ts";

const row = (txn: string): NewOutboxRow => ({
  txnId: txn as TxnId,
  lane: "room:!a:x",
  kind: "send",
  sender: "@bot:x",
  request: { method: "PUT", path: `/p/${txn}`, body: "{}" },
});
const rows = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => row(`${prefix}${i}`));
const inserted = async (store: SqliteOutboxStore, batch: NewOutboxRow[]) =>
  (await store.insert(batch)).filter((o) => o.inserted).length;

// The journal keeps the truth; these tests damage the key index file in the ways a crash, an
// operator or a restore can, and check that no txnId is ever journaled twice.
describe("the txn key index beside the journal", () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "courier-keys-"));
    path = join(dir, "db.sqlite");
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test("is a file of the owner's only, and dedupes across a restart", async () => {
    const store = new SqliteOutboxStore({ path });
    expect(await inserted(store, rows("a", 50))).toBe(50);
    await store.close();
    expect(statSync(`${path}-txnkeys`).mode & 0o777).toBe(0o600);
    const again = new SqliteOutboxStore({ path });
    expect(await inserted(again, [...rows("a", 50), row("b")])).toBe(1);
    await again.close();
  });

  test.each([
    ["deleted", () => rmSync(`${path}-txnkeys`)],
    [
      "damaged",
      () => writeFileSync(`${path}-txnkeys`, "not a database at all, but long enough ".repeat(200)),
    ],
    [
      "behind the journal (its last commits lost)",
      () => {
        const keys = new DatabaseSync(`${path}-txnkeys`);
        keys.exec("DELETE FROM txn_keys WHERE seq > 20; UPDATE indexed SET seq = 20, txn_id = 'a19'");
        keys.close();
      },
    ],
    [
      "from another journal",
      () => {
        const keys = new DatabaseSync(`${path}-txnkeys`);
        keys.exec("DELETE FROM txn_keys; UPDATE indexed SET txn_id = 'something else'");
        keys.close();
      },
    ],
  ])("rebuilt from the journal when %s", async (_, damage) => {
    const store = new SqliteOutboxStore({ path });
    await store.insert(rows("a", 40));
    await store.close();
    for (const file of ["-wal", "-shm"]) rmSync(`${path}-txnkeys${file}`, { force: true });
    damage();
    const again = new SqliteOutboxStore({ path });
    expect(await inserted(again, [...rows("a", 40), row("b")])).toBe(1);
    expect(await again.get("a7" as TxnId)).toMatchObject({ seq: 8 });
    await again.close();
  });

  test("a key whose row was pruned goes to the next row with that txnId", async () => {
    const store = new SqliteOutboxStore({ path });
    await store.insert([row("old")]);
    const { seq } = (await store.get("old" as TxnId))!;
    await store.settle([
      { seq, txnId: "old" as TxnId, lane: "room:!a:x", state: "sent", eventId: "$e", attempts: 1 },
    ]);
    await store.flush();
    expect(await store.prune(Date.now() + 1)).toBe(1);
    expect(await store.get("old" as TxnId)).toBeUndefined();
    expect(await inserted(store, [row("old")])).toBe(1);
    expect(await inserted(store, [row("old")])).toBe(0);
    await store.close();
    // The pruned row was the index's mark, and the next start still dedupes.
    const again = new SqliteOutboxStore({ path });
    expect(await inserted(again, [row("old")])).toBe(0);
    await again.close();
  });

  test("an entry pointing at a row that is not there is taken over, not trusted", async () => {
    const store = new SqliteOutboxStore({ path });
    await store.insert([row("a")]);
    await store.close();
    const keys = new DatabaseSync(`${path}-txnkeys`);
    keys.prepare("INSERT INTO txn_keys (txn_key, seq) VALUES (?, 999)").run(txnKey("ghost"));
    keys.close();
    const again = new SqliteOutboxStore({ path });
    expect(await inserted(again, [row("ghost")])).toBe(1);
    expect(await inserted(again, [row("ghost")])).toBe(0);
    expect(await again.get("ghost" as TxnId)).toMatchObject({ seq: 2 });
    await again.close();
  });

  test("another process reads rows the writer has not indexed in the file yet, and cannot write", async () => {
    const writer = new SqliteOutboxStore({ path });
    await writer.insert(rows("a", 5)); // keys held in the writer's open transaction
    const reader = new SqliteOutboxStore({ path });
    expect(await reader.get("a3" as TxnId)).toMatchObject({ seq: 4, state: "pending" });
    expect(await reader.drop(["a4" as TxnId])).toBe(1);
    await expect(reader.insert([row("b")])).rejects.toThrow(/Another process is writing this outbox store/);
    await reader.close();
    await writer.close();
  });
});

// The same file kept for the inbound journal's item keys (`-itemkeys`): an event the homeserver
// sends again must never be journaled, or handled, twice.
describe("the item key index beside the inbound journal", () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "courier-itemkeys-"));
    path = join(dir, "db.sqlite");
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const event = (id: string): NewInboundItem => ({
    kind: "event",
    lane: "room:!a:x",
    key: `event:${id}`,
    eventId: id,
    json: JSON.stringify({ event_id: id, room_id: "!a:x", type: "m.room.message" }),
  });
  const events = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => event(`$${prefix}${i}`));
  const journaled = async (journal: SqliteInboundJournal, items: NewInboundItem[]) =>
    (await journal.journal("t", items)).items.map((item) => item.eventId);

  test("is a file of the owner's only, dedupes within a transaction and across a restart", async () => {
    const journal = new SqliteInboundJournal({ path });
    expect(await journaled(journal, [...events("a", 30), event("$a3")])).toHaveLength(30);
    await journal.close();
    expect(statSync(`${path}-itemkeys`).mode & 0o777).toBe(0o600);
    const again = new SqliteInboundJournal({ path });
    expect(await journaled(again, [...events("a", 30), event("$b")])).toEqual(["$b"]);
    expect(await again.journal("u", [event("$b")])).toMatchObject({ duplicates: 1, items: [] });
    await again.close();
  });

  test.each([
    ["deleted", () => rmSync(`${path}-itemkeys`)],
    [
      "damaged",
      () => writeFileSync(`${path}-itemkeys`, "not a database at all, but long enough ".repeat(200)),
    ],
    [
      "behind the journal (its last commits lost)",
      () => {
        const keys = new DatabaseSync(`${path}-itemkeys`);
        keys.exec(
          "DELETE FROM item_keys WHERE seq > 10; UPDATE indexed SET seq = 10, item_key = 'event:$a9'",
        );
        keys.close();
      },
    ],
    [
      "from another journal",
      () => {
        const keys = new DatabaseSync(`${path}-itemkeys`);
        keys.exec("DELETE FROM item_keys; UPDATE indexed SET item_key = 'event:$elsewhere'");
        keys.close();
      },
    ],
  ])("rebuilt from the journal when %s", async (_, damage) => {
    const journal = new SqliteInboundJournal({ path });
    await journal.journal("t", events("a", 25));
    await journal.close();
    for (const file of ["-wal", "-shm"]) rmSync(`${path}-itemkeys${file}`, { force: true });
    damage();
    const again = new SqliteInboundJournal({ path });
    expect(await journaled(again, [...events("a", 25), event("$b")])).toEqual(["$b"]);
    expect((await again.pending(0, 100)).items.map((item) => item.seq)).toEqual(
      Array.from({ length: 26 }, (_, i) => i + 1),
    );
    await again.close();
  });

  test("a pruned item is journaled again when it comes back, and its seq never goes back", async () => {
    const journal = new SqliteInboundJournal({ path });
    const [item] = (await journal.journal("t", [event("$old")])).items;
    await journal.record({ begun: [], settled: [{ seq: item!.seq, state: "done" }] });
    expect(await journal.prune(Date.now() + 1)).toBe(1);
    expect(await journal.journal("u", [event("$old")])).toMatchObject({ items: [{ seq: 2 }], duplicates: 0 });
    expect(await journal.journal("v", [event("$old")])).toMatchObject({ items: [], duplicates: 1 });
    await journal.close();
    const again = new SqliteInboundJournal({ path });
    expect(await again.journal("w", [event("$old")])).toMatchObject({ items: [], duplicates: 1 });
    await again.close();
  });

  test("another process cannot write the same journal", async () => {
    const writer = new SqliteInboundJournal({ path });
    await writer.journal("t", [event("$a")]);
    const other = new SqliteInboundJournal({ path });
    await expect(other.journal("u", [event("$b")])).rejects.toThrow(
      /Another process is writing this inbound journal/,
    );
    await other.close();
    await writer.close();
  });
});
