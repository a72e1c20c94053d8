// The WAL checkpointer: the writer never checkpoints, a worker does, and the WAL stays bounded.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { openSqlite } from "../../../src/store/sqlite/SqliteDatabase.ts";
import { WalCheckpointer } from "../../../src/store/sqlite/WalCheckpointer.ts";

describe("WalCheckpointer", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), "courier-wal-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test("a worker keeps the WAL small while the writer commits; stop hands checkpoints back", async () => {
    const file = path.join(dir, "c.sqlite");
    const db = openSqlite({ path: file });
    db.exec("CREATE TABLE blob_test (id INTEGER PRIMARY KEY, data TEXT NOT NULL)");
    const checkpointer = new WalCheckpointer(db, file, 10);
    expect(db.prepare("PRAGMA wal_autocheckpoint").get()).toEqual({ wal_autocheckpoint: 0 });
    const insert = db.prepare("INSERT INTO blob_test (data) VALUES (?)");
    const chunk = "x".repeat(100_000);
    // 30 MB in 300 commits, with pauses in which the worker can catch up.
    for (let batch = 0; batch < 30; batch++) {
      db.exec("BEGIN");
      for (let i = 0; i < 10; i++) insert.run(chunk);
      db.exec("COMMIT");
      await new Promise((r) => setTimeout(r, 25));
    }
    const walBytes = statSync(`${file}-wal`).size;
    // Without checkpoints the WAL would hold all 30 MB.
    expect(walBytes).toBeLessThan(15_000_000);
    await checkpointer.stop();
    expect(db.prepare("PRAGMA wal_autocheckpoint").get()).toEqual({ wal_autocheckpoint: 1000 });
    expect(db.prepare("SELECT COUNT(*) AS n FROM blob_test").get()).toEqual({ n: 300 });
    db.close();
  }, 30_000);
});
