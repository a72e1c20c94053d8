// The CryptoStore contract (src/store/CryptoStore.ts), on every store kind alike: the devices'
// IndexedDB changes kept whole and in commit order, databases rewritten and dropped, loaded by
// prefix after a restart; the events parked for their keys.
import type { CryptoStore, StoredDatabase } from "../../../../src/store/CryptoStore.ts";
import { SqliteCryptoStore } from "../../../../src/store/sqlite/SqliteCryptoStore.ts";
import type { InboundItem } from "../../../../src/inbound/InboundJournal.ts";
import { STORE_KINDS, useStores } from "./storeKinds.ts";

const bytes = (...b: number[]) => new Uint8Array(b);
const database = (name: string, version: number, records: StoredDatabase["records"]): StoredDatabase => ({
  name,
  version,
  schema: [{ name: "s", keyPath: null, autoIncrement: true, indexes: [] }],
  records,
  generators: [{ store: "s", num: 3 }],
});
const item = (seq: number): InboundItem => ({
  seq,
  txnId: "t",
  kind: "event",
  lane: "room:!r:x",
  key: `event:$${seq}`,
  eventId: `$${seq}`,
  json: JSON.stringify({ event_id: `$${seq}`, type: "m.room.encrypted" }),
  payload: { event_id: `$${seq}` },
  attempts: 1,
});

describe.each(STORE_KINDS)("CryptoStore on $name", (kind) => {
  const stores = useStores(kind);
  /** The crypto store of this test's database, as the service opens it. */
  const cryptoStore = async (): Promise<CryptoStore> => {
    const opened = await stores.open();
    return kind.name === "sqlite" ? new SqliteCryptoStore(`${stores.where()}-crypto`) : opened.crypto!();
  };

  test("changes are kept whole and in order; a database rewritten or dropped; loaded by prefix after a restart", async () => {
    const store = await cryptoStore();
    store.write({
      kind: "database",
      database: database("dev/a::crypto", 7, [{ store: "s", key: bytes(1), value: bytes(10) }]),
    });
    store.write({ kind: "database", database: database("dev/b::crypto", 1, []) });
    store.write({ kind: "database", database: database("other", 1, []) });
    store.write({
      kind: "records",
      ops: [
        { kind: "put", db: "dev/a::crypto", store: "s", key: bytes(2), value: bytes(20) },
        { kind: "put", db: "dev/a::crypto", store: "s", key: bytes(1), value: bytes(11) },
        { kind: "delete", db: "dev/a::crypto", store: "s", key: bytes(2) },
        { kind: "put", db: "dev/a::crypto", store: "s", key: bytes(3), value: bytes(30) },
        { kind: "generator", db: "dev/a::crypto", store: "s", num: 9 },
      ],
    });
    store.write({ kind: "records", ops: [{ kind: "clear", db: "dev/b::crypto", store: "s" }] });
    store.write({ kind: "drop", name: "dev/b::crypto" });
    await store.flushed();
    await store.close();
    await stores.reopen();
    const again = await cryptoStore();
    const loaded = await again.load("dev/");
    expect(loaded.map((d) => d.name)).toEqual(["dev/a::crypto"]);
    const [a] = loaded;
    expect(a).toMatchObject({
      version: 7,
      schema: database("x", 1, []).schema,
      generators: [{ store: "s", num: 9 }],
    });
    const records = [...a!.records]
      .map((r) => [r.store, [...r.key], [...r.value]])
      .sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
    expect(records).toEqual([
      ["s", [1], [11]],
      ["s", [3], [30]],
    ]);
    expect(await again.stats()).toEqual({ databases: 2, records: 2, bytes: 4 });
    await again.close();
  });

  test("parked events: once per event, by session in parking order; done; pruned by age", async () => {
    const store = await cryptoStore();
    const { parked } = store;
    await parked.park("$1", "s1", item(1));
    await parked.park("$2", "s2", item(2));
    await parked.park("$3", "s1", item(3));
    await parked.park("$1", "s1", item(1));
    expect(await parked.count()).toBe(3);
    expect((await parked.sessions()).sort()).toEqual(["s1", "s2"]);
    const waiting = await parked.waitingFor("s1");
    expect(waiting.map((i) => i.eventId)).toEqual(["$1", "$3"]);
    expect(waiting[0]).toMatchObject({ seq: 1, lane: "room:!r:x", json: item(1).json });
    await parked.done("$1");
    expect((await parked.waitingFor("s1")).map((i) => i.eventId)).toEqual(["$3"]);
    expect(await parked.prune(Date.now() - 60_000)).toBe(0);
    expect(await parked.prune(Date.now() + 1)).toBe(2);
    expect(await parked.count()).toBe(0);
    await store.close();
  });

  if (kind.name === "postgres") {
    test("a change the database refuses is written again until it is in, and the ones after it wait", async () => {
      const store = await cryptoStore();
      store.write({ kind: "database", database: database("dev/a::crypto", 1, []) });
      await store.flushed();
      const heal = await stores.failWrites("crypto_idb_records", "INSERT", "NEW.store = 's'");
      store.write({
        kind: "records",
        ops: [{ kind: "put", db: "dev/a::crypto", store: "s", key: bytes(1), value: bytes(1) }],
      });
      store.write({
        kind: "records",
        ops: [{ kind: "put", db: "dev/a::crypto", store: "t", key: bytes(2), value: bytes(2) }],
      });
      let flushed = false;
      const done = store.flushed().then(() => (flushed = true));
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(flushed).toBe(false);
      expect((await store.stats()).records).toBe(0); // the second waits behind the first
      await heal();
      await done;
      expect((await store.stats()).records).toBe(2);
      await store.close();
    });

    test("one process runs the devices: a second claim is refused until the first closes", async () => {
      const first = await cryptoStore();
      const second = (await stores.open()).crypto!();
      await first.claim!();
      await expect(second.claim!()).rejects.toThrow(/Another instance on this database runs encryption/);
      await first.close();
      await second.claim!();
      await second.close();
    });
  }
});
