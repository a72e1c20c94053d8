// What only the PostgreSQL stores can have: several instances (each its own pool) on one database.
import type { TxnId } from "../../../src/ids.ts";
import type { NewInboundItem } from "../../../src/inbound/InboundJournal.ts";
import type { CourierStores } from "../../../src/runtime/Courier.ts";
import { openPostgresStores } from "../../../src/runtime/createCourier.ts";
import { startPostgresCluster, type PostgresCluster } from "../../support/postgresCluster.ts";

const event = (id: string): NewInboundItem => ({
  kind: "event",
  lane: "room:!a:x",
  key: `event:${id}`,
  eventId: id,
  json: "{}",
});

describe("PostgreSQL stores of several instances on one database", () => {
  let cluster: PostgresCluster;
  let instances: CourierStores[] = [];
  beforeAll(async () => {
    cluster = await startPostgresCluster();
  }, 60_000);
  afterAll(() => cluster.stop(), 30_000);
  beforeEach(async () => {
    const url = await cluster.createDatabase();
    instances = [openPostgresStores(url, { leased: false }), openPostgresStores(url, { leased: false })];
    await Promise.all(instances.map((s) => s.ready));
  });
  afterEach(async () => {
    await Promise.all(instances.map((s) => s.close()));
  });

  test("items journaled by both become visible in seq order: a reader never finds one below what it has read", async () => {
    const [a, b] = instances as [CourierStores, CourierStores];
    // Bounded: 2 instances × 25 transactions of 2 items, while a reader follows the journal.
    const writers = [a, b].map(async (stores, w) => {
      for (let t = 0; t < 25; t++)
        await stores.inbound.journal(`${w}-${t}`, [event(`$${w}-${t}-1`), event(`$${w}-${t}-2`)]);
    });
    let writing = true;
    const allWritten = Promise.all(writers).finally(() => (writing = false));
    const seen: number[] = [];
    let readUpTo = 0;
    const follow = async () => {
      const read = await b.inbound.pending(readUpTo, 1000);
      seen.push(...read.items.map((i) => i.seq));
      readUpTo = read.readUpTo;
    };
    while (writing) await follow();
    await allWritten;
    await follow();
    expect(seen).toHaveLength(100);
    expect(seen).toEqual([...seen].sort((x, y) => x - y));
    expect(new Set(seen).size).toBe(100);
    expect(readUpTo).toBe(await a.inbound.lastSeq());
  });

  test("one event pushed to both at once is journaled once", async () => {
    const outcomes = await Promise.all(instances.map((s, i) => s.inbound.journal(`t${i}`, [event("$same")])));
    expect(outcomes.map((o) => o.items.length).sort()).toEqual([0, 1]);
    expect(outcomes.map((o) => o.duplicates).sort()).toEqual([0, 1]);
  });

  test("the same txnId enqueued by both at once is journaled once", async () => {
    const row = (txn: string) => ({
      txnId: txn as TxnId,
      lane: "room:!a:x",
      kind: "send" as const,
      sender: "@bot:x",
      request: { method: "PUT" as const, path: `/p/${txn}`, body: "{}" },
    });
    const txns = Array.from({ length: 20 }, (_, i) => `t${i}`);
    const [fromA, fromB] = await Promise.all(instances.map((s) => s.outbox.insert(txns.map(row))));
    txns.forEach((_, i) => {
      expect([fromA![i]!.inserted, fromB![i]!.inserted].filter(Boolean)).toHaveLength(1);
      expect(fromA![i]!.row.seq).toBe(fromB![i]!.row.seq);
    });
    expect(await instances[0]!.outbox.totals()).toEqual({ pending: 20, sent: 0, dead: 0 });
  });

  test("of two instances claiming one webhook body at once, one has it", async () => {
    // Bounded: 10 bodies, 3 deliveries through each instance.
    for (let body = 0; body < 10; body++) {
      const claims = instances.flatMap((s, i) =>
        [0, 1, 2].map((d) =>
          s.pluginData.claimWebhookBody("gh", "POST /github", `h${body}`, `d-${i}-${d}`, Date.now(), 60_000),
        ),
      );
      const answers = await Promise.all(claims);
      expect(answers.filter((a) => a === undefined)).toHaveLength(1);
    }
  });
});
