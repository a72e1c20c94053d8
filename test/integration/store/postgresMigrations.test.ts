// What only the PostgreSQL store has: its schema is migrated at start by one instance at a time
// (an advisory lock), and a schema newer than the code is refused.
import pg from "pg";
import { openPostgresStores } from "../../../src/runtime/createCourier.ts";
import { SchemaTooNewError } from "../../../src/store/postgres/PgDatabase.ts";
import { PG_MIGRATIONS } from "../../../src/store/postgres/migrations.ts";
import { startPostgresCluster, type PostgresCluster } from "../../support/postgresCluster.ts";

async function query<T extends pg.QueryResultRow>(url: string, sql: string, values: unknown[] = []) {
  const client = new pg.Client(url);
  await client.connect();
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

describe("PostgreSQL schema migrations", () => {
  let cluster: PostgresCluster;
  beforeAll(async () => {
    cluster = await startPostgresCluster();
  }, 60_000);
  afterAll(() => cluster.stop(), 30_000);

  test("a schema newer than the code is refused with SchemaTooNewError, and left as it is", async () => {
    const url = await cluster.createDatabase();
    const first = openPostgresStores(url);
    await first.ready;
    await first.outbox.insert([
      {
        txnId: "kept" as never,
        lane: "room:!a:x",
        kind: "send",
        sender: "@b:x",
        request: { method: "PUT", path: "/p" },
      },
    ]);
    await first.close();
    const newer = PG_MIGRATIONS.length + 1;
    await query(url, "INSERT INTO courier_schema (version) VALUES ($1)", [newer]);

    const stores = openPostgresStores(url);
    const refused = stores.ready!.catch((error: unknown) => error);
    expect(await refused).toBeInstanceOf(SchemaTooNewError);
    expect(((await refused) as Error).message).toContain(
      `version ${newer}, newer than this courier knows (${PG_MIGRATIONS.length})`,
    );
    expect(await query(url, "SELECT max(version) AS version FROM courier_schema")).toEqual([
      { version: newer },
    ]);
    expect(await query(url, "SELECT txn_id FROM outbox")).toEqual([{ txn_id: "kept" }]);
    // The refusing instance, still running, gave the migration lock back: another one starts.
    await query(url, "DELETE FROM courier_schema WHERE version = $1", [newer]);
    const after = openPostgresStores(url);
    await expect(after.ready).resolves.toBeUndefined();
    await Promise.all([stores.close(), after.close()]);
  });

  test("instances starting together on a new database migrate it once", async () => {
    // Bounded: 4 new databases, 3 instances (pools) each, all started at once.
    for (let round = 0; round < 4; round++) {
      const url = await cluster.createDatabase();
      const instances = Array.from({ length: 3 }, () => openPostgresStores(url, { leased: false }));
      const outcomes = await Promise.allSettled(instances.map((s) => s.ready));
      await Promise.all(instances.map((s) => s.close()));
      expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "fulfilled", "fulfilled"]);
      expect(
        await query(
          url,
          "SELECT version, count(*)::integer AS n FROM courier_schema GROUP BY version ORDER BY version",
        ),
      ).toEqual(PG_MIGRATIONS.map((_, i) => ({ version: i + 1, n: 1 })));
    }
  });
});
