// Child process for the IdbMirror tests (fake-indexeddb is one global per process, so a "fresh
// start" needs a fresh process). argv: mode, file.
//   write   plain IndexedDB use through the mirror, then prints the in-memory content as JSON
//   restore restores "test-" from the file, then prints the content as JSON (and stats)
//   burst   commits numbered transactions forever, printing each number once committed
//   check   restores "burst" and prints which transactions' records are there
import { IdbMirror } from "../../src/crypto/IdbMirror.ts";

/* eslint-disable @typescript-eslint/no-explicit-any -- the DOM's IndexedDB types are not in lib */
type Any = any;
const [mode = "", file = ""] = process.argv.slice(2);
const mirror = IdbMirror.open(file);
const idb: Any = (globalThis as Any).indexedDB;
const IDBKeyRange: Any = (globalThis as Any).IDBKeyRange;

const req = <T>(r: Any): Promise<T> =>
  new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result as T);
    r.onerror = (e: Any) => {
      e.preventDefault?.();
      reject(r.error as Error);
    };
  });
const done = (tx: Any): Promise<void> =>
  new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new Error("aborted"));
  });
function open(name: string, version: number, upgrade?: (db: Any, tx: Any) => void): Promise<Any> {
  const r = idb.open(name, version);
  r.onupgradeneeded = () => upgrade?.(r.result, r.transaction);
  return req(r);
}

/** Every value and key with its type kept, for an exact comparison as JSON. */
function tagged(v: unknown): unknown {
  if (v === undefined) return { $undefined: true };
  if (typeof v === "number") return Object.is(v, -0) || !Number.isFinite(v) ? { $num: String(v) } : v;
  if (typeof v === "bigint") return { $bigint: String(v) };
  if (v === null || typeof v !== "object") return v;
  if (v instanceof Date) return { $date: v.getTime() };
  if (v instanceof ArrayBuffer) return { $ab: Buffer.from(v).toString("hex") };
  if (ArrayBuffer.isView(v))
    return {
      $view: v.constructor.name,
      hex: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex"),
    };
  if (v instanceof Map) return { $map: [...v].map(([k, x]) => [tagged(k), tagged(x)]) };
  if (v instanceof Set) return { $set: [...v].map(tagged) };
  if (Array.isArray(v)) return v.map(tagged);
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, tagged(x)]));
}

async function dump(prefix: string): Promise<unknown> {
  const out: unknown[] = [];
  const names = ((await idb.databases()) as { name: string }[])
    .map((d) => d.name)
    .filter((n) => n.startsWith(prefix))
    .sort();
  for (const name of names) {
    const db = await open(name, undefined as unknown as number);
    const stores: unknown[] = [];
    for (const storeName of [...db.objectStoreNames]) {
      const tx = db.transaction(storeName, "readwrite");
      const store = tx.objectStore(storeName);
      const keys = await req<unknown[]>(store.getAllKeys());
      const values = await req<unknown[]>(store.getAll());
      const indexes: unknown[] = [];
      for (const indexName of [...store.indexNames]) {
        const index = store.index(indexName);
        indexes.push({
          name: indexName,
          keyPath: index.keyPath,
          unique: index.unique,
          multiEntry: index.multiEntry,
          keys: tagged(await req(index.getAllKeys())),
        });
      }
      // The key generator's state: the key the next add would get, then undone.
      let nextKey: unknown = null;
      if (store.autoIncrement) nextKey = await req(store.add(store.keyPath ? {} : "probe"));
      tx.abort();
      stores.push({
        name: storeName,
        keyPath: store.keyPath,
        autoIncrement: store.autoIncrement,
        indexes,
        records: keys.map((k, i) => [tagged(k), tagged(values[i])]),
        nextKey,
      });
    }
    out.push({ name, version: db.version, stores });
    db.close();
  }
  return out;
}

async function write(): Promise<void> {
  let db = await open("test-a", 1, (d) => {
    const inline = d.createObjectStore("inline", { keyPath: "id" });
    inline.createIndex("byName", "name");
    d.createObjectStore("outline");
    d.createObjectStore("auto", { keyPath: "n", autoIncrement: true });
    d.createObjectStore("autoOut", { autoIncrement: true });
    d.createObjectStore("gone");
    d.createObjectStore("cleared");
    const compound = d.createObjectStore("compound", { keyPath: ["a", "b"] });
    compound.createIndex("byTag", "tags", { multiEntry: true, unique: false });
  });
  const shared = new ArrayBuffer(8);
  new Uint8Array(shared).set([1, 2, 3, 4, 5, 6, 7, 8]);
  let tx = db.transaction([...db.objectStoreNames], "readwrite");
  const inline = tx.objectStore("inline");
  for (let i = 0; i < 10; i++)
    inline.put({
      id: `k${i}`,
      name: `n${i % 3}`,
      bytes: new Uint8Array([i, 255, 0]),
      map: new Map<unknown, unknown>([
        ["a", i],
        [2, new Date(1700000000000 + i)],
      ]),
      nested: { list: [1, "two", null, undefined, -0, NaN, 2n ** 70n], set: new Set([i]) },
      views: [new Uint8Array(shared, 0, 4), new Uint16Array(shared, 4, 2)],
      unicode: "é\u{1F600}\uD800",
    });
  const outline = tx.objectStore("outline");
  outline.put({ v: "string key" }, "s");
  outline.put({ v: "number key" }, 42);
  outline.put({ v: "array key" }, ["a", 1, [new Date(5)]]);
  outline.put({ v: "date key" }, new Date(1234567));
  outline.put({ v: "binary key" }, new Uint8Array([9, 8, 7]));
  outline.put({ v: "lone surrogate key" }, "\uDC00x");
  outline.add({ v: "added" }, "added");
  const auto = tx.objectStore("auto");
  for (let i = 0; i < 3; i++) auto.put({ text: `generated ${i}` });
  auto.put({ n: 10, text: "explicit 10" });
  const autoOut = tx.objectStore("autoOut");
  for (let i = 0; i < 5; i++) autoOut.add(`gen ${i}`);
  autoOut.put("explicit 7.5", 7.5);
  tx.objectStore("gone").put("doomed", 1);
  const cleared = tx.objectStore("cleared");
  for (let i = 0; i < 3; i++) cleared.put(i, i);
  tx.objectStore("compound").put({ a: 1, b: "x", tags: ["t1", "t2"] });
  tx.objectStore("compound").put({ a: 2, b: "y", tags: ["t2", "t3"] });
  await done(tx);

  // Deletes: by key, by range, the generator's highest key (the generator stays), cursors.
  tx = db.transaction(["inline", "outline", "autoOut", "cleared"], "readwrite");
  tx.objectStore("inline").delete("k0");
  tx.objectStore("inline").delete(IDBKeyRange.bound("k2", "k4"));
  tx.objectStore("outline").delete(42);
  tx.objectStore("autoOut").delete(IDBKeyRange.lowerBound(5));
  tx.objectStore("cleared").clear();
  tx.objectStore("cleared").put("after clear", 99);
  await new Promise<void>((resolve, reject) => {
    const c = tx.objectStore("inline").openCursor();
    c.onerror = () => reject(c.error as Error);
    c.onsuccess = () => {
      const cursor = c.result;
      if (!cursor) return resolve();
      if (cursor.key === "k5") cursor.delete();
      else if (cursor.key === "k6") cursor.update({ ...cursor.value, name: "updated" });
      cursor.continue();
    };
  });
  await done(tx);

  // An aborted transaction leaves nothing, its generated keys included.
  tx = db.transaction(["inline", "autoOut", "outline"], "readwrite");
  tx.objectStore("inline").put({ id: "aborted", name: "x" });
  tx.objectStore("autoOut").add("aborted");
  tx.objectStore("outline").delete("s");
  await req(tx.objectStore("outline").put("x", "y"));
  tx.abort();
  await done(tx).catch(() => undefined);

  // A failed add whose error is prevented: the transaction commits the rest.
  tx = db.transaction(["outline"], "readwrite");
  await req(tx.objectStore("outline").add({ v: "dup" }, "added")).catch(() => undefined);
  tx.objectStore("outline").put({ v: "after a failed add" }, "after");
  await done(tx);
  db.close();

  // A later upgrade: a store deleted, one renamed, one created, an index added.
  db = await open("test-a", 3, (d, upgrade) => {
    d.deleteObjectStore("gone");
    upgrade.objectStore("cleared").name = "renamed";
    const fresh = d.createObjectStore("fresh", { keyPath: "id" });
    fresh.createIndex("uniq", "u", { unique: true });
    upgrade.objectStore("outline").createIndex("byV", "v");
    upgrade.objectStore("outline").put({ v: "put in the upgrade" }, "upgrade");
  });
  tx = db.transaction(["fresh"], "readwrite");
  tx.objectStore("fresh").put({ id: 1, u: "one" });
  await done(tx);
  db.close();

  // Other databases: one outside the prefix, one deleted.
  db = await open("other-b", 1, (d) => d.createObjectStore("s"));
  tx = db.transaction(["s"], "readwrite");
  tx.objectStore("s").put(1, 1);
  await done(tx);
  db.close();
  db = await open("test-deleted", 1, (d) => d.createObjectStore("s"));
  tx = db.transaction(["s"], "readwrite");
  tx.objectStore("s").put(1, 1);
  await done(tx);
  db.close();
  await req(idb.deleteDatabase("test-deleted"));
}

const BURST_PER_TX = 5;
if (mode === "write") {
  await write();
  console.log(JSON.stringify({ dump: await dump("test-") }));
} else if (mode === "restore") {
  const started = performance.now();
  await mirror.restore("test-");
  const ms = performance.now() - started;
  const names = ((await idb.databases()) as { name: string }[]).map((d) => d.name).sort();
  console.log(JSON.stringify({ dump: await dump("test-"), names, stats: await mirror.stats(), ms }));
} else if (mode === "burst") {
  const db = await open("burst", 1, (d) => d.createObjectStore("s"));
  for (let n = 0; ; n++) {
    const tx = db.transaction(["s"], "readwrite");
    const s = tx.objectStore("s");
    // Each transaction: its own records, and the running counter, all or nothing.
    for (let i = 0; i < BURST_PER_TX; i++) s.put({ n, i, pad: "x".repeat(200) }, `t${n}-${i}`);
    s.put(n, "last");
    await done(tx);
    console.log(n);
  }
} else if (mode === "check") {
  await mirror.restore("burst");
  const db = await open("burst", 1);
  const tx = db.transaction(["s"], "readonly");
  const keys = await req<string[]>(tx.objectStore("s").getAllKeys());
  const last = await req<number>(tx.objectStore("s").get("last"));
  const perTx = new Map<number, number>();
  for (const k of keys) {
    const m = /^t(\d+)-\d+$/.exec(k);
    if (m) perTx.set(Number(m[1]), (perTx.get(Number(m[1])) ?? 0) + 1);
  }
  console.log(
    JSON.stringify({ last, perTx: [...perTx].sort((a, b) => a[0] - b[0]), perTxSize: BURST_PER_TX + 0 }),
  );
}
await mirror.close();
