// Crash safety, proven: a child process enqueues a burst through the outbox while the fake
// homeserver answers with 429s, 5xx, resets and lost answers; it is killed with SIGKILL at seeded
// random moments and restarted on the same database. At the end the homeserver must hold every
// message exactly once, in enqueue order per room. On both stores: SQLite and PostgreSQL.
import { spawn, type ChildProcess } from "node:child_process";
import { DatabaseSync } from "node:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { FakeHomeserver, mulberry32 } from "../support/FakeHomeserver.ts";
import { startPostgresCluster, type PostgresCluster } from "../support/postgresCluster.ts";

const CHILD = fileURLToPath(new URL("../support/outboxCrashChild.ts", import.meta.url));
const COUNT = 2000;
const ROOMS = 20;
const KILLS = 6;
const SEED = Number(process.env.CRASH_SEED ?? 20261123);
const TOKEN = "crash-as-token";

function spawnChild(options: object): {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, [CHILD, JSON.stringify(options)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** Rows in the outbox journal, and distinct txnIds among them. */
async function journalCounts(db: string): Promise<{ n: number; ids: number }> {
  const sql = "SELECT COUNT(*)::integer AS n, COUNT(DISTINCT txn_id)::integer AS ids FROM outbox";
  if (db.startsWith("postgres://")) {
    const client = new pg.Client(db);
    await client.connect();
    const { rows } = await client.query<{ n: number; ids: number }>(sql);
    await client.end();
    return { ...rows[0]! };
  }
  const journal = new DatabaseSync(db, { readOnly: true });
  const row = journal.prepare(sql.replaceAll("::integer", "")).get() as { n: number; ids: number };
  journal.close();
  return { ...row };
}

describe.each(["sqlite", "postgres"])("outbox crash safety on %s", (kind) => {
  let hs: FakeHomeserver;
  let dir: string;
  let cluster: PostgresCluster | undefined;
  let db: string;

  beforeAll(async () => {
    hs = await FakeHomeserver.start({ asToken: TOKEN, seed: SEED });
    dir = mkdtempSync(join(tmpdir(), "courier-crash-"));
    cluster = kind === "postgres" ? await startPostgresCluster() : undefined;
    db = cluster ? await cluster.createDatabase() : join(dir, "outbox.sqlite");
  }, 60_000);
  afterAll(async () => {
    await hs.stop();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  test(`SIGKILL at ${KILLS} random moments mid-burst: every message once, in order`, async () => {
    hs.setFaults({
      rate429: 0.06,
      retryAfterMs: 20,
      rate500: 0.03,
      rate502: 0.02,
      rateReset: 0.01,
      rateDropAfterProcess: 0.03,
      delayMs: 1,
    });
    const options = {
      db,
      homeserverUrl: hs.url,
      asToken: TOKEN,
      count: COUNT,
      rooms: ROOMS,
      senders: 4,
      perSenderRate: 100,
    };
    const random = mulberry32(SEED);
    const storedAtKill: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      const run = spawnChild(options);
      // Kill once this run has delivered a random part more: mid-burst however slow the machine.
      const before = hs.stats.stored;
      const target = before + 20 + Math.floor(random() * (COUNT / (KILLS + 2)));
      const deadline = Date.now() + 30_000;
      while (hs.stats.stored < target && run.child.exitCode === null && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 5));
      expect({ progressed: hs.stats.stored >= target, output: run.output() }).toMatchObject({
        progressed: true,
      });
      run.child.kill("SIGKILL");
      await run.exited;
      storedAtKill.push(hs.stats.stored);
    }
    const final = spawnChild(options);
    const code = await final.exited;
    expect({ code, output: final.output() }).toEqual({ code: 0, output: expect.stringContaining("done") });

    // The kills landed mid-burst: each one saw progress, and not the end.
    const midBurst = storedAtKill.filter((n, i) => n > (storedAtKill[i - 1] ?? 0) && n < COUNT);
    expect(midBurst.length).toBeGreaterThanOrEqual(5);

    const faults = hs.stats.faults;
    expect(faults["429"]).toBeGreaterThan(0);
    expect(faults["500"] + faults["502"]).toBeGreaterThan(0);
    expect(faults.dropAfterProcess).toBeGreaterThan(0);

    for (let r = 0; r < ROOMS; r++) {
      const bodies = hs.roomEvents(`!room${r}:fake.test`).map((e) => (e.content as { n: number }).n);
      const expected = Array.from({ length: COUNT / ROOMS }, (_, i) => i * ROOMS + r);
      expect(bodies).toEqual(expected);
    }
    expect(hs.allRoomEvents()).toHaveLength(COUNT);

    // The homeserver dedupes a resent txnId, so check the journal itself too: each restart
    // re-enqueued the burst, and keys a kill lost before the index committed them were found again.
    expect(await journalCounts(db)).toEqual({ n: COUNT, ids: COUNT });
  }, 120_000);
});
