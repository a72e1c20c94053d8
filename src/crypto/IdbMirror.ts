// A write-through of fake-indexeddb (in memory) into the crypto store, and its restore on start.
//
// The crypto wasm (@matrix-org/matrix-sdk-crypto-wasm) keeps its whole state (Olm account, Olm
// and Megolm sessions, devices…) in IndexedDB; in Node that is fake-indexeddb, in memory. Every
// committed IndexedDB transaction is handed to the store (store/CryptoStore.ts) as ONE change,
// before its "complete" event reaches the page's listeners, in commit order. The SQLite store
// commits it there and then: when the sdk's awaited call returns, the change is on disk. The
// PostgreSQL store queues it: `flushed()` says when it is committed.
//
// fake-indexeddb 6.2.8 internals relied on (pinned exactly in package.json; re-read on upgrade):
// - lib/ObjectStore.js: storeRecord(record, noOverwrite, rollbackLog), deleteRecord(keyOrRange,
//   rollbackLog), clear(rollbackLog) run when an operation executes, with the owning
//   transaction's `_rollbackLog` array; rollbacks call them again WITHOUT a rollbackLog.
//   `records` is a RecordStore (values(range) iterates {key, value}); `rawDatabase.name`,
//   `name`, `keyPath`, `autoIncrement`, `keyGenerator.num`, `rawIndexes` (lib/Index.js:
//   name, keyPath, unique, multiEntry).
// - FDBTransaction.js: "complete" and "abort" are dispatched once through dispatchEvent, after
//   the last request; `mode`, `_rollbackLog`, `db._rawDatabase` (lib/Database.js: name,
//   version, rawObjectStores).
// - FDBFactory.js: a database is dropped by `_databases.delete(name)` (deleteDatabase).
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Deserializer, Serializer } from "node:v8";
import * as fakeIdb from "fake-indexeddb";
import type {
  CryptoStore,
  MirrorStats,
  RecordOp,
  StoreSchema,
  StoredDatabase,
} from "../store/CryptoStore.ts";
import { SqliteCryptoStore } from "../store/sqlite/SqliteCryptoStore.ts";

// --- the internals, typed as far as we use them ------------------------------------------------

type IdbKey = number | string | Date | ArrayBuffer | IdbKey[];
interface RawRecord {
  key: IdbKey;
  value: unknown;
}
interface RawIndex {
  name: string;
  keyPath: string | string[];
  unique: boolean;
  multiEntry: boolean;
}
interface RawDatabase {
  name: string;
  version: number;
  rawObjectStores: Map<string, RawObjectStore>;
}
interface RawObjectStore {
  rawDatabase: RawDatabase;
  name: string;
  keyPath: string | string[] | null;
  autoIncrement: boolean;
  keyGenerator: { num: number } | null;
  rawIndexes: Map<string, RawIndex>;
  records: { values(range?: unknown): Iterable<RawRecord> };
  storeRecord(record: RawRecord, noOverwrite: boolean, rollbackLog?: unknown[]): IdbKey;
  deleteRecord(key: unknown, rollbackLog?: unknown[]): void;
  clear(rollbackLog?: unknown[]): void;
}
interface RawTransaction {
  mode: string;
  _rollbackLog: unknown[];
  db: { _rawDatabase: RawDatabase };
  dispatchEvent(event: { type: string }): unknown;
}
interface RawFactory {
  _databases: Map<string, RawDatabase>;
  open(name: string, version?: number): RawRequest;
  databases(): Promise<{ name: string; version: number }[]>;
}
interface RawRequest {
  result: unknown;
  error: unknown;
  transaction: RawTransaction | null;
  onupgradeneeded: ((event: unknown) => void) | null;
  onsuccess: ((event: unknown) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onblocked: ((event: unknown) => void) | null;
}
interface RawConnection {
  close(): void;
  createObjectStore(
    name: string,
    options: { keyPath: string | string[] | null; autoIncrement: boolean },
  ): {
    createIndex(name: string, keyPath: string | string[], o: object): unknown;
    put(value: unknown, key?: unknown): unknown;
  };
  _rawDatabase: RawDatabase;
}

// lib/ObjectStore.js is not in the package's exports: import it by file, next to the ESM build
// (resolved through the CJS entry, build/cjs/index.js). Same URL as FDBDatabase's own import, so
// the same class.
const requireHere = createRequire(import.meta.url);
const esmDir = join(dirname(requireHere.resolve("fake-indexeddb")), "..", "esm");
const RawObjectStoreClass = (
  (await import(pathToFileURL(join(esmDir, "lib", "ObjectStore.js")).href)) as {
    default: { prototype: RawObjectStore };
  }
).default;
const FDBTransactionClass = (
  (await import(pathToFileURL(join(esmDir, "FDBTransaction.js")).href)) as {
    default: { prototype: RawTransaction };
  }
).default;
const FDBKeyRangeClass = fakeIdb.IDBKeyRange as unknown as abstract new (...a: never[]) => object;
const FDBFactoryClass = fakeIdb.IDBFactory as unknown as abstract new (...a: never[]) => object;

// --- keys and values ---------------------------------------------------------------------------

// Values: V8's structured-clone wire format (the base Serializer, not DefaultSerializer, so typed
// arrays are written natively and views sharing one ArrayBuffer keep sharing it on the way back).
function encodeValue(value: unknown): Uint8Array {
  const s = new Serializer();
  s.writeHeader();
  s.writeValue(value);
  return s.releaseBuffer();
}
function decodeValue(bytes: Uint8Array): unknown {
  const d = new Deserializer(bytes);
  d.readHeader();
  return d.readValue();
}

// Keys: a canonical encoding of our own rather than v8.serialize, because the SQLite primary key
// must be the same bytes for the same IndexedDB key, and V8 writes a string one-byte or two-byte
// after its internal representation, not its content. Strings as UTF-16 code units (lone
// surrogates are valid keys); -0 as 0 (the same key for IndexedDB).
const TAG = { number: 1, date: 2, string: 3, binary: 4, array: 5 } as const;
function encodeKey(key: IdbKey): Buffer {
  const parts: Buffer[] = [];
  const walk = (k: IdbKey): void => {
    if (typeof k === "number" || k instanceof Date) {
      const b = Buffer.alloc(9);
      b[0] = typeof k === "number" ? TAG.number : TAG.date;
      const n = typeof k === "number" ? k : k.getTime();
      b.writeDoubleBE(n === 0 ? 0 : n, 1);
      parts.push(b);
    } else if (typeof k === "string" || k instanceof ArrayBuffer) {
      const body = typeof k === "string" ? Buffer.from(k, "utf16le") : Buffer.from(k);
      const head = Buffer.alloc(5);
      head[0] = typeof k === "string" ? TAG.string : TAG.binary;
      head.writeUInt32BE(body.length, 1);
      parts.push(head, body);
    } else if (Array.isArray(k)) {
      const head = Buffer.alloc(5);
      head[0] = TAG.array;
      head.writeUInt32BE(k.length, 1);
      parts.push(head);
      for (const item of k) walk(item);
    } else {
      throw new TypeError(`IdbMirror: not a normalised IndexedDB key: ${String(k)}`);
    }
  };
  walk(key);
  return Buffer.concat(parts);
}
function decodeKey(bytes: Uint8Array): IdbKey {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const read = (): IdbKey => {
    const tag = buf[at];
    if (tag === TAG.number || tag === TAG.date) {
      const n = buf.readDoubleBE(at + 1);
      at += 9;
      return tag === TAG.number ? n : new Date(n);
    }
    const len = buf.readUInt32BE(at + 1);
    at += 5;
    if (tag === TAG.array) return Array.from({ length: len }, read);
    const body = buf.subarray(at, at + len);
    at += len;
    if (tag === TAG.string) return body.toString("utf16le");
    if (tag === TAG.binary) return new Uint8Array(body).buffer;
    throw new TypeError(`IdbMirror: bad key tag ${String(tag)}`);
  };
  return read();
}

// --- schema ------------------------------------------------------------------------------------

function schemaOf(db: RawDatabase): StoreSchema[] {
  return [...db.rawObjectStores.values()].map((s) => ({
    name: s.name,
    keyPath: s.keyPath,
    autoIncrement: s.autoIncrement,
    indexes: [...s.rawIndexes.values()].map((i) => ({
      name: i.name,
      keyPath: i.keyPath,
      unique: i.unique,
      multiEntry: i.multiEntry,
    })),
  }));
}

// --- the patches (installed once per process; they route to the open mirror, if any) -----------

type Op =
  | { kind: "put"; db: string; store: string; key: Buffer; value: Uint8Array }
  | { kind: "delete"; db: string; store: string; key: Buffer }
  | { kind: "clear"; db: string; store: string }
  | { kind: "generator"; db: string; store: string; raw: RawObjectStore };

// Pending ops of each running transaction, keyed by its `_rollbackLog` array (what the raw
// store methods see of their transaction).
const pending = new WeakMap<unknown[], Op[]>();
// Transactions whose changes must not be mirrored (restore's own upgrade).
const unmirrored = new WeakSet<unknown[]>();
let current: IdbMirror | undefined;
let patched = false;

function record(rollbackLog: unknown[] | undefined, op: Op): void {
  // No rollbackLog: a rollback undoing an aborted transaction's change in memory.
  if (rollbackLog === undefined || current === undefined || unmirrored.has(rollbackLog)) return;
  let ops = pending.get(rollbackLog);
  if (ops === undefined) pending.set(rollbackLog, (ops = []));
  ops.push(op);
}

function installPatches(): void {
  if (patched) return;
  patched = true;
  const proto = RawObjectStoreClass.prototype;
  const { storeRecord, deleteRecord, clear } = proto;
  proto.storeRecord = function (this: RawObjectStore, newRecord, noOverwrite, rollbackLog) {
    const key = storeRecord.call(this, newRecord, noOverwrite, rollbackLog);
    // Reached only if the store succeeded (a ConstraintError throws and was undone inside).
    if (rollbackLog !== undefined && current !== undefined && !unmirrored.has(rollbackLog)) {
      const db = this.rawDatabase.name;
      record(rollbackLog, {
        kind: "put",
        db,
        store: this.name,
        key: encodeKey(key),
        value: encodeValue(newRecord.value),
      });
      if (this.keyGenerator !== null)
        record(rollbackLog, { kind: "generator", db, store: this.name, raw: this });
    }
    return key;
  };
  proto.deleteRecord = function (this: RawObjectStore, keyOrRange, rollbackLog) {
    if (rollbackLog !== undefined && current !== undefined && !unmirrored.has(rollbackLog)) {
      // The exact keys removed, read before the original removes them.
      const keys =
        keyOrRange instanceof FDBKeyRangeClass
          ? [...this.records.values(keyOrRange)].map((r) => r.key)
          : [keyOrRange as IdbKey];
      for (const key of keys)
        record(rollbackLog, {
          kind: "delete",
          db: this.rawDatabase.name,
          store: this.name,
          key: encodeKey(key),
        });
    }
    deleteRecord.call(this, keyOrRange, rollbackLog);
  };
  proto.clear = function (this: RawObjectStore, rollbackLog) {
    record(rollbackLog, { kind: "clear", db: this.rawDatabase.name, store: this.name });
    clear.call(this, rollbackLog);
  };

  const txProto = FDBTransactionClass.prototype;
  const dispatchEvent = txProto.dispatchEvent;
  // An own property on FDBTransaction.prototype shadowing FakeEventTarget's.
  txProto.dispatchEvent = function (this: RawTransaction, event) {
    if (event.type === "complete" || event.type === "abort") {
      const log = this._rollbackLog;
      const ops = pending.get(log);
      pending.delete(log);
      const skip = unmirrored.has(log) || current === undefined;
      // Before the page's listeners: by the time the sdk's await returns, it is on disk. A
      // failing write throws out of here (an uncaught exception from fake-indexeddb's task):
      // the listeners never see "complete", and nothing goes on from a state the disk lacks.
      if (event.type === "complete" && !skip && current !== undefined) {
        if (this.mode === "versionchange") current.writeSnapshot(this.db._rawDatabase);
        else if (ops !== undefined) current.writeOps(ops);
      }
    }
    return dispatchEvent.call(this, event);
  };
}

function patchFactory(factory: RawFactory): void {
  const dbs = factory._databases;
  if (Object.hasOwn(dbs, "delete")) return;
  // deleteDatabase's last step (FDBFactory.js, waitForOthersClosedDelete) drops the database.
  dbs.delete = function (name: string): boolean {
    current?.dropDatabase(name);
    return Map.prototype.delete.call(this, name);
  };
}

// --- the mirror --------------------------------------------------------------------------------

export class IdbMirror {
  readonly #store: CryptoStore;
  /** Databases in memory when the mirror opened: each must be in the store at its version. */
  #unverified: Array<{ name: string; version: number }>;
  #closed = false;

  /**
   * Makes fake-indexeddb the global IndexedDB if there is none, and mirrors every committed
   * transaction into `store` (a path: a SQLite crypto store there) from now on. One per process
   * at a time: a second open before close() throws. Open it before anything opens an IndexedDB
   * database: one in memory and not in the store makes the first `restore` throw.
   */
  static open(store: CryptoStore | string): IdbMirror {
    if (current !== undefined) throw new Error("IdbMirror: already open in this process");
    const g = globalThis as Record<string, unknown>;
    if (g.indexedDB === undefined) {
      for (const [name, value] of Object.entries(fakeIdb))
        if (name.startsWith("IDB") && g[name] === undefined) g[name] = value;
      g.indexedDB = fakeIdb.indexedDB;
    }
    if (!(g.indexedDB instanceof FDBFactoryClass))
      throw new Error("IdbMirror: globalThis.indexedDB is not this fake-indexeddb's");
    installPatches();
    patchFactory(g.indexedDB as unknown as RawFactory);
    const mirror = new IdbMirror(typeof store === "string" ? new SqliteCryptoStore(store) : store);
    mirror.#unverified = [...(g.indexedDB as unknown as RawFactory)._databases.values()]
      .filter((db) => db.version > 0)
      .map((db) => ({ name: db.name, version: db.version }));
    current = mirror;
    return mirror;
  }

  private constructor(store: CryptoStore) {
    this.#store = store;
    this.#unverified = [];
  }

  /** @internal One committed readwrite transaction's changes, in the order they ran. */
  writeOps(ops: readonly Op[]): void {
    const generators = new Map<string, RecordOp>();
    const records: RecordOp[] = [];
    for (const op of ops) {
      if (op.kind !== "generator") records.push(op);
      // The generator's state at commit (it never goes back, even when its records are deleted).
      else generators.set(`${op.db}\0${op.store}`, { ...op, num: op.raw.keyGenerator?.num ?? 0 });
    }
    this.#store.write({ kind: "records", ops: [...records, ...generators.values()] });
  }

  /**
   * @internal A committed versionchange transaction: the whole database, rewritten. Upgrades are
   * rare, and they create, delete and rename stores and indexes outside the record operations.
   */
  writeSnapshot(db: RawDatabase): void {
    const stores = [...db.rawObjectStores.values()];
    const database: StoredDatabase = {
      name: db.name,
      version: db.version,
      schema: schemaOf(db),
      records: stores.flatMap((store) =>
        [...store.records.values()].map((r) => ({
          store: store.name,
          key: encodeKey(r.key),
          value: encodeValue(r.value),
        })),
      ),
      generators: stores
        .filter((store) => store.keyGenerator !== null)
        .map((store) => ({ store: store.name, num: store.keyGenerator!.num })),
    };
    this.#store.write({ kind: "database", database });
  }

  /** @internal indexedDB.deleteDatabase(name) completed. */
  dropDatabase(name: string): void {
    this.#store.write({ kind: "drop", name });
  }

  /** Settles once every change so far is committed in the store. */
  flushed(): Promise<void> {
    return this.#store.flushed();
  }

  /**
   * Loads every stored database whose name starts with `prefix` and that is not in memory yet:
   * opened at exactly its stored version, its stores and indexes created and its records put in
   * that upgrade (not mirrored), then closed; the sdk's own open then finds nothing to upgrade.
   */
  async restore(prefix: string): Promise<void> {
    if (this.#unverified.length > 0) {
      const stored = new Map((await this.#store.load("")).map((db) => [db.name, db.version]));
      const stray = this.#unverified.find((db) => stored.get(db.name) !== db.version);
      // It would be mirrored from here on without its schema, and could not be restored.
      if (stray) throw new Error(`IdbMirror: database ${stray.name} was opened before the mirror`);
      this.#unverified = [];
    }
    const factory = (globalThis as Record<string, unknown>).indexedDB as RawFactory;
    const inMemory = new Set((await factory.databases()).map((d) => d.name));
    for (const db of await this.#store.load(prefix)) {
      if (!inMemory.has(db.name)) await restoreOne(factory, db);
    }
  }

  stats(): Promise<MirrorStats> {
    return this.#store.stats();
  }

  /** Stops mirroring (the patches stay, idle) and closes the store once its writes are in. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (current === this) current = undefined;
    await this.#store.close();
  }
}

async function restoreOne(factory: RawFactory, stored: StoredDatabase): Promise<void> {
  const records = new Map<string, Array<{ key: Uint8Array; value: Uint8Array }>>();
  for (const r of stored.records) {
    let list = records.get(r.store);
    if (!list) records.set(r.store, (list = []));
    list.push(r);
  }
  await new Promise<void>((resolve, reject) => {
    const request = factory.open(stored.name, stored.version);
    request.onupgradeneeded = () => {
      const tx = request.transaction;
      if (tx === null) return;
      unmirrored.add(tx._rollbackLog);
      const db = request.result as RawConnection;
      for (const s of stored.schema) {
        const store = db.createObjectStore(s.name, { keyPath: s.keyPath, autoIncrement: s.autoIncrement });
        for (const i of s.indexes)
          store.createIndex(i.name, i.keyPath, { unique: i.unique, multiEntry: i.multiEntry });
        for (const row of records.get(s.name) ?? []) {
          const value = decodeValue(row.value);
          // An inline key comes out of the value; an out-of-line one is given.
          if (s.keyPath === null) store.put(value, decodeKey(row.key));
          else store.put(value);
        }
      }
      // The stored generator is at least what the puts advance it to: restore it as it was.
      for (const { store: storeName, num } of stored.generators) {
        const raw = db._rawDatabase.rawObjectStores.get(storeName);
        if (raw?.keyGenerator) raw.keyGenerator.num = Math.max(raw.keyGenerator.num, num);
      }
    };
    request.onsuccess = () => {
      (request.result as RawConnection).close();
      resolve();
    };
    request.onerror = () => reject(request.error as Error);
  });
}
