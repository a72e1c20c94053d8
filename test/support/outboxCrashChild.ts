// The process the crash test kills: enqueues a deterministic burst through the durable outbox
// and drains it. Run again on the same database, it re-enqueues the same burst (the journaled
// part collapses onto the existing rows) and sends what is left. Prints "done" when drained.
import { MatrixClient } from "../../src/matrix/MatrixClient.ts";
import { Outbox } from "../../src/outbox/Outbox.ts";
import { openPostgresStores } from "../../src/runtime/createCourier.ts";
import { SqliteOutboxStore } from "../../src/store/sqlite/SqliteOutboxStore.ts";
import { roomId, userId } from "../../src/ids.ts";

export interface CrashChildOptions {
  /** A SQLite file, or a postgres:// URL. */
  db: string;
  homeserverUrl: string;
  asToken: string;
  count: number;
  rooms: number;
  senders: number;
  perSenderRate: number;
}

export const roomFor = (n: number, rooms: number) => roomId(`!room${n % rooms}:fake.test`);
export const senderFor = (n: number, senders: number) => userId(`@ghost_${n % senders}:fake.test`);

const options = JSON.parse(process.argv[2] ?? "{}") as CrashChildOptions;
const postgres = options.db.startsWith("postgres://") ? openPostgresStores(options.db) : undefined;
await postgres?.ready;
const store = postgres?.outbox ?? new SqliteOutboxStore({ path: options.db });
const client = new MatrixClient({
  homeserverUrl: options.homeserverUrl,
  accessToken: options.asToken,
  timeoutMs: 2000,
});
const outbox = new Outbox({
  store,
  transport: client,
  appserviceId: "crash-test",
  botUserId: userId("@bot:fake.test"),
  maxConcurrency: 8,
  rate: { perSecond: options.perSenderRate, burst: 5 },
  retry: { baseMs: 5, capMs: 100 },
  requestTimeoutMs: 2000,
});
await outbox.start();
const BATCH = 40;
for (let i = 0; i < options.count; i += BATCH) {
  const batch = [];
  for (let n = i; n < Math.min(i + BATCH, options.count); n++) {
    batch.push(
      outbox.enqueue({
        kind: "send",
        roomId: roomFor(n, options.rooms),
        eventType: "m.room.message",
        content: { msgtype: "m.text", body: `message ${n}`, n },
        sender: senderFor(n, options.senders),
        cause: `burst-${n}`,
        ordinal: 0,
      }),
    );
  }
  await Promise.all(batch);
}
process.stdout.write("enqueued\n");
await outbox.onIdle();
await outbox.stop();
await (postgres ?? (store as SqliteOutboxStore)).close();
await client.close();
process.stdout.write("done\n");
