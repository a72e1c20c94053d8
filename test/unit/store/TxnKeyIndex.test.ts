import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import { txnKey } from "../../../src/store/sqlite/txnKey.ts";
import type { NewOutboxRow } from "../../../src/store/OutboxStore.ts";
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
