// A write-through of fake-indexeddb (in memory) into a SQLite file, and its restore on start.
//
// The crypto wasm (@matrix-org/matrix-sdk-crypto-wasm) keeps its whole state (Olm account, Olm
// and Megolm sessions, devices…) in IndexedDB; in Node that is fake-indexeddb, in memory. Every
// committed IndexedDB transaction is written here, in ONE SQLite transaction, synchronously,
// before its "complete" event reaches the page's listeners: when the sdk's awaited call
// returns, the change is on disk, and commits reach the disk in commit order.
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
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { chmodSync, closeSync, mkdirSync, openSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Deserializer, Serializer } from "node:v8";
import * as fakeIdb from "fake-indexeddb";

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

interface StoreSchema {
  name: string;
  keyPath: string | string[] | null;
  autoIncrement: boolean;
  indexes: { name: string; keyPath: string | string[]; unique: boolean; multiEntry: boolean }[];
}
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

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS idb_databases (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    schema TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS idb_records (
    db TEXT NOT NULL,
    store TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (db, store, key)
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS idb_key_generators (
    db TEXT NOT NULL,
    store TEXT NOT NULL,
    num REAL NOT NULL,
    PRIMARY KEY (db, store)
  ) WITHOUT ROWID;
`;

export interface IdbMirrorStats {
  databases: number;
  records: number;
  /** Bytes of the stored keys and values (not the file's size). */
  bytes: number;
}

export class IdbMirror {
  readonly #sql: DatabaseSync;
  readonly #put: StatementSync;
  readonly #delete: StatementSync;
  readonly #clear: StatementSync;
  readonly #generator: StatementSync;
  #closed = false;

  /**
   * Opens (creating, mode 0600) the mirror file, makes fake-indexeddb the global IndexedDB if
   * there is none, and mirrors every committed transaction from now on. One per process at a
   * time: a second open before close() throws. Open it before anything opens an IndexedDB
   * database (one in memory and not in the file is an error).
   */
  static open(file: string): IdbMirror {
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
    const mirror = new IdbMirror(file);
    // A database already in memory but not in the file (at its version) would be mirrored from
    // here on without its schema, and could not be restored.
    const recorded = mirror.#sql.prepare("SELECT version FROM idb_databases WHERE name = ?");
    for (const db of (g.indexedDB as unknown as RawFactory)._databases.values()) {
      const row = recorded.get(db.name) as { version: number } | undefined;
      if (db.version > 0 && row?.version !== db.version) {
        mirror.close();
        throw new Error(`IdbMirror: database ${db.name} was opened before the mirror`);
      }
    }
    current = mirror;
    return mirror;
  }

  private constructor(file: string) {
    if (file !== ":memory:") {
      mkdirSync(dirname(file), { recursive: true });
      // Created 0600 before SQLite sees it (its -wal and -shm take the main file's mode); an
      // existing file is narrowed too: it holds every private key of the device.
      closeSync(openSync(file, "a", 0o600));
      chmodSync(file, 0o600);
    }
    this.#sql = new DatabaseSync(file);
    // FULL: the WAL is fsynced at every commit. NORMAL would survive a process crash, but a power
    // cut could then lose the last crypto commits while a later outbox row built on them (a
    // message encrypted with an advanced Megolm ratchet, a claimed one-time key) survives in its
    // own file: the restored device would reuse ratchet indexes or lose Olm sessions.
    this.#sql.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; ${SCHEMA}`);
    this.#put = this.#sql.prepare(
      "INSERT OR REPLACE INTO idb_records (db, store, key, value) VALUES (?, ?, ?, ?)",
    );
    this.#delete = this.#sql.prepare("DELETE FROM idb_records WHERE db = ? AND store = ? AND key = ?");
    this.#clear = this.#sql.prepare("DELETE FROM idb_records WHERE db = ? AND store = ?");
    this.#generator = this.#sql.prepare(
      "INSERT OR REPLACE INTO idb_key_generators (db, store, num) VALUES (?, ?, ?)",
    );
  }

  #inTransaction(body: () => void): void {
    this.#sql.exec("BEGIN IMMEDIATE");
    try {
      body();
      this.#sql.exec("COMMIT");
    } catch (err) {
      if (this.#sql.isTransaction) this.#sql.exec("ROLLBACK");
      throw err;
    }
  }

  /** @internal One committed readwrite transaction's changes, in the order they ran. */
  writeOps(ops: readonly Op[]): void {
    this.#inTransaction(() => {
      const generators = new Map<string, Op & { kind: "generator" }>();
      for (const op of ops) {
        if (op.kind === "put") this.#put.run(op.db, op.store, op.key, op.value);
        else if (op.kind === "delete") this.#delete.run(op.db, op.store, op.key);
        else if (op.kind === "clear") this.#clear.run(op.db, op.store);
        else generators.set(`${op.db}\0${op.store}`, op);
      }
      // The generator's state at commit (it never goes back, even when its records are deleted).
      for (const g of generators.values()) this.#generator.run(g.db, g.store, g.raw.keyGenerator?.num ?? 0);
    });
  }

  /**
   * @internal A committed versionchange transaction: the whole database, rewritten. Upgrades are
   * rare, and they create, delete and rename stores and indexes outside the record operations.
   */
  writeSnapshot(db: RawDatabase): void {
    this.#inTransaction(() => {
      this.#dropRows(db.name);
      this.#sql
        .prepare("INSERT INTO idb_databases (name, version, schema) VALUES (?, ?, ?)")
        .run(db.name, db.version, JSON.stringify(schemaOf(db)));
      for (const store of db.rawObjectStores.values()) {
        for (const r of store.records.values())
          this.#put.run(db.name, store.name, encodeKey(r.key), encodeValue(r.value));
        if (store.keyGenerator !== null) this.#generator.run(db.name, store.name, store.keyGenerator.num);
      }
    });
  }

  /** @internal indexedDB.deleteDatabase(name) completed. */
  dropDatabase(name: string): void {
    this.#inTransaction(() => this.#dropRows(name));
  }

  #dropRows(name: string): void {
    this.#sql.prepare("DELETE FROM idb_databases WHERE name = ?").run(name);
    this.#sql.prepare("DELETE FROM idb_records WHERE db = ?").run(name);
    this.#sql.prepare("DELETE FROM idb_key_generators WHERE db = ?").run(name);
  }

  /**
   * Loads every recorded database whose name starts with `prefix` and that is not in memory yet:
   * opened at exactly its recorded version, its stores and indexes created and its records put
   * in that upgrade (not mirrored), then closed; the sdk's own open then finds nothing to upgrade.
   */
  async restore(prefix: string): Promise<void> {
    const factory = (globalThis as Record<string, unknown>).indexedDB as RawFactory;
    const inMemory = new Set((await factory.databases()).map((d) => d.name));
    const rows = this.#sql
      .prepare("SELECT name, version, schema FROM idb_databases WHERE substr(name, 1, length(?)) = ?")
      .all(prefix, prefix) as { name: string; version: number; schema: string }[];
    for (const row of rows) {
      if (inMemory.has(row.name)) continue;
      await this.#restoreOne(factory, row.name, row.version, JSON.parse(row.schema) as StoreSchema[]);
    }
  }

  async #restoreOne(
    factory: RawFactory,
    name: string,
    version: number,
    schema: StoreSchema[],
  ): Promise<void> {
    const records = this.#sql.prepare("SELECT key, value FROM idb_records WHERE db = ? AND store = ?");
    const generators = new Map(
      (
        this.#sql.prepare("SELECT store, num FROM idb_key_generators WHERE db = ?").all(name) as {
          store: string;
          num: number;
        }[]
      ).map((r) => [r.store, r.num]),
    );
    await new Promise<void>((resolve, reject) => {
      const request = factory.open(name, version);
      request.onupgradeneeded = () => {
        const tx = request.transaction;
        if (tx === null) return;
        unmirrored.add(tx._rollbackLog);
        const db = request.result as RawConnection;
        for (const s of schema) {
          const store = db.createObjectStore(s.name, { keyPath: s.keyPath, autoIncrement: s.autoIncrement });
          for (const i of s.indexes)
            store.createIndex(i.name, i.keyPath, { unique: i.unique, multiEntry: i.multiEntry });
          for (const row of records.iterate(name, s.name) as Iterable<{
            key: Uint8Array;
            value: Uint8Array;
          }>) {
            const value = decodeValue(row.value);
            // An inline key comes out of the value; an out-of-line one is given.
            if (s.keyPath === null) store.put(value, decodeKey(row.key));
            else store.put(value);
          }
        }
        // The recorded generator is at least what the puts advance it to: restore it as it was.
        for (const [storeName, num] of generators) {
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

  stats(): IdbMirrorStats {
    const count = (sql: string) => (this.#sql.prepare(sql).get() as { n: number | null }).n ?? 0;
    return {
      databases: count("SELECT count(*) AS n FROM idb_databases"),
      records: count("SELECT count(*) AS n FROM idb_records"),
      bytes: count("SELECT sum(length(key) + length(value)) AS n FROM idb_records"),
    };
  }

  /** Stops mirroring (the patches stay, idle) and closes the file. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (current === this) current = undefined;
    this.#sql.close();
  }
}
