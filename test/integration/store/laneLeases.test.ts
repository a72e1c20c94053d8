// How PgLaneLeases balances lanes between instances: above its fair share an instance gives lanes
// back, but never one it is in the middle of (a handler running, a request on the wire).
import type pg from "pg";
import type { NewInboundItem } from "../../../src/inbound/InboundJournal.ts";
import { createPool, migratePostgres } from "../../../src/store/postgres/PgDatabase.ts";
import { PgInboundJournal } from "../../../src/store/postgres/PgInboundJournal.ts";
import { PgLaneLeases } from "../../../src/store/postgres/PgLaneLeases.ts";
import { startPostgresCluster, type PostgresCluster } from "../../support/postgresCluster.ts";

const LEASE_MS = 600;
const event = (lane: string, id: string): NewInboundItem => ({
  kind: "event",
  lane,
  key: `event:${id}`,
  eventId: id,
  json: "{}",
});

describe("PgLaneLeases", () => {
  let cluster: PostgresCluster;
  let pool: pg.Pool;
  const leases: PgLaneLeases[] = [];
  beforeAll(async () => {
    cluster = await startPostgresCluster();
  }, 60_000);
  afterAll(async () => {
    await Promise.all(leases.map((l) => l.stop()));
    await pool?.end();
    await cluster?.stop();
  }, 30_000);

  test("a new instance gets the lanes above the first one's share, except those it is busy in", async () => {
    pool = createPool({ url: await cluster.createDatabase() });
    await migratePostgres(pool);
    const lanes = ["a", "b", "c", "d"];
    await new PgInboundJournal(pool).journal(
      "t1",
      lanes.map((lane) => event(lane, `$${lane}`)),
    );
    const start = async (instanceId: string, busy: (lane: string) => boolean) => {
      const lease = new PgLaneLeases(pool, { work: "inbound", instanceId, leaseMs: LEASE_MS });
      leases.push(lease);
      await lease.start({ owned: () => {}, grew: () => {}, busy });
      return lease;
    };
    const first = await start("first", (lane) => lane === "c" || lane === "d");
    expect(lanes.filter((lane) => first.owns(lane))).toEqual(lanes);

    // Two live instances: a share is 2. By name, "c" and "d" would be the ones given back.
    const second = await start("second", () => false);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && lanes.filter((lane) => second.owns(lane)).length < 2)
      await new Promise((r) => setTimeout(r, LEASE_MS / 6));
    expect(lanes.filter((lane) => first.owns(lane))).toEqual(["c", "d"]);
    expect(lanes.filter((lane) => second.owns(lane))).toEqual(["a", "b"]);
    // The database says so too: the leases given back were deleted, not left to be renewed.
    expect((await first.leases()).map(({ lane, owner }) => `${lane} ${owner}`)).toEqual([
      "inbound:a second",
      "inbound:b second",
      "inbound:c first",
      "inbound:d first",
    ]);
  }, 30_000);
});
