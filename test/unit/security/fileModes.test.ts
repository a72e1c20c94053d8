// The files that hold tokens or journaled traffic are private to their owner (0600): the
// registration (as_token, hs_token), the config written by `courier init`, and the database with
// its -wal and -shm files, whatever the umask and whatever modes an older version left behind.
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { openSqlite, StoreFolderError } from "../../../src/store/sqlite/SqliteDatabase.ts";
import { WriterLock } from "../../../src/store/sqlite/WriterLock.ts";
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

test("an existing data folder at 0755 is narrowed to 0700 when the store is opened (mkdirSync leaves it as it is)", () => {
  const folder = path.join(dir, "data");
  mkdirSync(folder, { mode: 0o755 });
  chmodSync(folder, 0o755);
  const file = path.join(folder, "courier.sqlite");
  const lock = WriterLock.take(file);
  expect(mode(folder)).toBe("700");
  chmodSync(folder, 0o755);
  const db = openSqlite({ path: file });
  expect(mode(folder)).toBe("700");
  db.close();
  lock.release();
});

test("a data folder group or others can enter that is not ours is refused with what to do, and nothing is created in it", () => {
  // Not ours: as root, a folder chowned to another uid; otherwise a folder root owns (/tmp).
  const uid = process.getuid!();
  let folder = "/tmp";
  if (uid === 0) {
    folder = path.join(dir, "theirs");
    mkdirSync(folder);
    chmodSync(folder, 0o755);
    chownSync(folder, 4242, 4242);
  }
  if (statSync(folder).uid === uid) throw new Error(`test setup: ${folder} is ours`);
  const before = readdirSync(folder);
  const file = path.join(folder, "courier.sqlite");
  for (const open of [() => openSqlite({ path: file }), () => WriterLock.take(file)]) {
    let error: unknown;
    try {
      open();
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(StoreFolderError);
    expect((error as Error).message).toContain(`the store's folder ${folder} is mode `);
    expect((error as Error).message).toContain("courier will not narrow another user's folder to 0700");
    expect((error as Error).message).toMatch(/store\.path/);
  }
  expect(readdirSync(folder)).toEqual(before);
  expect(existsSync(file)).toBe(false);
  if (uid === 0) expect(mode(folder)).toBe("755");
});

test.each([
  ["shared by everyone (sticky bit, as /tmp)", 0o1777, false, "is shared (sticky bit)"],
  ["holding other folders (a home, /var/lib)", 0o755, true, "holds other folders (other)"],
])("a folder %s is refused, not narrowed, even though it is ours", (_what, folderMode, withSub, says) => {
  const folder = path.join(dir, "shared");
  mkdirSync(folder);
  if (withSub) mkdirSync(path.join(folder, "other"));
  chmodSync(folder, folderMode);
  const file = path.join(folder, "courier.sqlite");
  for (const open of [() => openSqlite({ path: file }), () => WriterLock.take(file)]) {
    expect(open).toThrow(StoreFolderError);
    expect(open).toThrow(`${says}: courier will not narrow a folder that is not the store's own to 0700`);
  }
  expect((statSync(folder).mode & 0o7777).toString(8)).toBe(folderMode.toString(8));
  expect(existsSync(file)).toBe(false);
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
