// The files that hold tokens or journaled traffic are private to their owner (0600): the
// registration (as_token, hs_token), the config written by `courier init`, and the database with
// its -wal and -shm files, whatever the umask and whatever modes an older version left behind.
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { openSqlite } from "../../../src/store/sqlite/SqliteDatabase.ts";
import { writeRegistration } from "../../../src/config/registration.ts";
import { loadConfig } from "../../../src/config/loadConfig.ts";

const mode = (file: string) => (statSync(file).mode & 0o777).toString(8);

let dir: string;
let umask: number;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "courier-modes-"));
  // The most permissive common umask: without our chmods, files would be 0644 / 0666.
  umask = process.umask(0o000);
});
afterEach(() => {
  process.umask(umask);
  rmSync(dir, { recursive: true, force: true });
});

test("a new database, its -wal and -shm are 0600 and its folder 0700, even with umask 000", () => {
  const file = path.join(dir, "data", "courier.sqlite");
  const db = openSqlite({ path: file });
  db.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1);");
  expect([mode(file), mode(`${file}-wal`), mode(`${file}-shm`), mode(path.dirname(file))]).toEqual([
    "600",
    "600",
    "600",
    "700",
  ]);
  db.close();
});

test("a database and WAL files an older version left world-readable are narrowed to 0600", () => {
  const file = path.join(dir, "courier.sqlite");
  // An older courier, or another tool: the files as the umask left them, and still open (a crash
  // leaves -wal and -shm behind just like this).
  const old = new DatabaseSync(file);
  old.exec("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);");
  for (const f of [file, `${file}-wal`, `${file}-shm`]) chmodSync(f, 0o644);
  const db = openSqlite({ path: file });
  expect([mode(file), mode(`${file}-wal`), mode(`${file}-shm`)]).toEqual(["600", "600", "600"]);
  db.close();
  old.close();
});

test("the registration is written 0600 with umask 000, and a wider existing file is narrowed", () => {
  const configPath = path.join(dir, "config.yaml");
  writeFileSync(configPath, "homeserver:\n  url: http://127.0.0.1:8008\n  serverName: localhost\n");
  const config = loadConfig(configPath, {});
  const registration = path.join(dir, "registration.yaml");
  writeRegistration(registration, config);
  expect(mode(registration)).toBe("600");
  chmodSync(registration, 0o666);
  writeRegistration(registration, config);
  expect(mode(registration)).toBe("600");
  expect(readFileSync(registration, "utf8")).toMatch(/as_token: /);
});
