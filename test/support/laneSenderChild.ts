// One of several instances sharing a PostgreSQL outbox: sends only the lanes it leases
// (PgLaneLeases), until killed or told to stop (SIGTERM). Prints "ready" once it has renewed.
import { MatrixClient } from "../../src/matrix/MatrixClient.ts";
import { Outbox } from "../../src/outbox/Outbox.ts";
import { userId } from "../../src/ids.ts";
import { createPool, migratePostgres } from "../../src/store/postgres/PgDatabase.ts";
import { PgLaneLeases } from "../../src/store/postgres/PgLaneLeases.ts";
import { PgOutboxStore } from "../../src/store/postgres/PgOutboxStore.ts";

export interface LaneSenderOptions {
  url: string;
  instanceId: string;
  leaseMs: number;
  homeserverUrl: string;
  asToken: string;
  /** Lanes sending at once. @default 16 */
  maxConcurrency?: number;
}

const options = JSON.parse(process.argv[2] ?? "{}") as LaneSenderOptions;
const pool = createPool({ url: options.url });
await migratePostgres(pool);
const client = new MatrixClient({
  homeserverUrl: options.homeserverUrl,
  accessToken: options.asToken,
  timeoutMs: 2000,
});
const outbox = new Outbox({
  store: new PgOutboxStore(pool),
  transport: client,
  appserviceId: "lanes-test",
  botUserId: userId("@bot:fake.test"),
  maxConcurrency: options.maxConcurrency ?? 16,
  rate: { perSecond: 10_000, burst: 10_000 },
  retry: { baseMs: 5, capMs: 100 },
  ownership: new PgLaneLeases(pool, { instanceId: options.instanceId, leaseMs: options.leaseMs }),
});
// Send latencies (benchmarks): reported as one JSON line when told to stop.
const latencies: number[] = [];
outbox.on("sent", (_row, _eventId, ms) => latencies.push(ms));
const started = outbox.start();
// The handler is in place before "ready" is printed: a parent that signals as soon as it reads
// "ready" would otherwise meet the default action (killed by SIGTERM, exit code null).
process.once("SIGTERM", () => {
  void (async () => {
    await started;
    await outbox.stop(2000);
    await pool.end();
    await client.close();
    process.stdout.write(`${JSON.stringify({ sent: latencies.length, latencies })}\nstopped\n`);
    process.exit(0);
  })();
});
await started;
process.stdout.write("ready\n");
