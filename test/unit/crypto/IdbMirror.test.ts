// The mirror's write-through and restore, across processes (fake-indexeddb is one global per
// process): a child uses IndexedDB through the mirror and prints what it holds; a fresh child
// restores from the file and must print exactly the same.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { IdbMirror } from "../../../src/crypto/IdbMirror.ts";

const CHILD = fileURLToPath(new URL("../../support/idbMirrorChild.ts", import.meta.url));
const run = (mode: string, file: string) =>
  JSON.parse(execFileSync(process.execPath, [CHILD, mode, file], { encoding: "utf8" })) as {
    dump: { name: string; stores: { name: string; records: unknown[]; nextKey: unknown }[] }[];
    names?: string[];
    stats?: { databases: number; records: number; bytes: number };
  };

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "idb-mirror-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a fresh process restores exactly what was committed", () => {
  const file = join(dir, "crypto.sqlite");
  const written = run("write", file);
  expect(statSync(file).mode & 0o777).toBe(0o600);
  const restored = run("restore", file);
  expect(restored.dump).toEqual(written.dump);

  // What the scenario left: deletes, clear, cursor ops and the upgrade took effect; the aborted
  // transaction (and its generated key) left nothing; the generator kept its deleted keys.
  const stores = new Map(written.dump[0]!.stores.map((s) => [s.name, s]));
  expect([...stores.keys()].sort()).toEqual(
    ["auto", "autoOut", "compound", "fresh", "inline", "outline", "renamed"].sort(),
  );
  expect(stores.get("inline")!.records.map((r) => (r as unknown[])[0])).toEqual([
    "k1",
    "k6",
    "k7",
    "k8",
    "k9",
  ]);
  expect(stores.get("renamed")!.records).toEqual([[99, "after clear"]]);
  expect(stores.get("autoOut")!.nextKey).toBe(8);
  expect(stores.get("auto")!.nextKey).toBe(11);
  // Only the prefix, and not the deleted database.
  expect(restored.names).toEqual(["test-a"]);
  expect(restored.stats).toMatchObject({ databases: 2, records: 26 });
});

test("in this process: one mirror at a time, opened before any database", async () => {
  const file = join(dir, "inproc.sqlite");
  const mirror = IdbMirror.open(file);
  expect(() => IdbMirror.open(join(dir, "other.sqlite"))).toThrow(/already open/);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- no DOM types in lib
  const idb = (globalThis as any).indexedDB;
  await new Promise<void>((resolve, reject) => {
    const r = idb.open("inproc", 2);
    r.onupgradeneeded = () => r.result.createObjectStore("s").put(new Uint8Array([1]), "k");
    r.onsuccess = () => {
      r.result.close();
      resolve();
    };
    r.onerror = () => reject(r.error as Error);
  });
  expect(await mirror.stats()).toMatchObject({ databases: 1, records: 1 });
  await mirror.close();
  // "inproc" is in memory but not in a fresh file: its schema would be missing there.
  const fresh = IdbMirror.open(join(dir, "fresh.sqlite"));
  await expect(fresh.restore("")).rejects.toThrow(/opened before the mirror/);
  await fresh.close();
  const again = IdbMirror.open(file);
  await again.restore("");
  await again.close();
});
