// Several instances sharing one PostgreSQL outbox (PgLaneLeases): three sender processes deliver
// 5,000 messages in 50 rooms that a producer journals meanwhile. One sender is killed with SIGKILL
// mid-burst and never comes back; another is killed and restarted later. Every message arrives
// once, in order per room; the dead sender's lanes are taken over after its leases expire.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { roomId, userId } from "../../../src/ids.ts";
import { Outbox } from "../../../src/outbox/Outbox.ts";
import { createPool, migratePostgres } from "../../../src/store/postgres/PgDatabase.ts";
import { PgOutboxStore } from "../../../src/store/postgres/PgOutboxStore.ts";
import { FakeHomeserver } from "../../support/FakeHomeserver.ts";
import { startPostgresCluster, type PostgresCluster } from "../../support/postgresCluster.ts";

const CHILD = fileURLToPath(new URL("../../support/laneSenderChild.ts", import.meta.url));
const COUNT = 5000;
const ROOMS = 50;
const LEASE_MS = 1500;
const TOKEN = "lanes-as-token";

interface Sender {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

describe("several instances on one PostgreSQL outbox", () => {
  let cluster: PostgresCluster;
  let hs: FakeHomeserver;
  const senders: Sender[] = [];
  beforeAll(async () => {
    cluster = await startPostgresCluster();
    hs = await FakeHomeserver.start({ asToken: TOKEN });
  }, 60_000);
  afterAll(async () => {
    for (const s of senders)
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill("SIGKILL");
    await Promise.all(senders.map((s) => s.exited));
    await hs.stop();
    await cluster.stop();
  }, 30_000);

  test("SIGKILL one of three mid-burst, kill and restart another: every message once, in order per room", async () => {
    const url = await cluster.createDatabase();
    const pool = createPool({ url });
    await migratePostgres(pool);
    const spawnSender = (instanceId: string): Sender => {
      const options = { url, instanceId, leaseMs: LEASE_MS, homeserverUrl: hs.url, asToken: TOKEN };
      const child = spawn(process.execPath, [CHILD, JSON.stringify(options)], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      child.stdout!.on("data", (chunk: Buffer) => (output += chunk));
      child.stderr!.on("data", (chunk: Buffer) => (output += chunk));
      const sender = {
        child,
        output: () => output,
        exited: new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code))),
      };
      senders.push(sender);
      return sender;
    };
    const until = async (what: string, done: () => boolean | Promise<boolean>, ms = 60_000) => {
      const deadline = Date.now() + ms;
      while (!(await done())) {
        if (Date.now() > deadline)
          throw new Error(
            `${what}: not within ${ms} ms (${JSON.stringify(hs.stats)}) ${senders.map((s) => s.output()).join("\n")}`,
          );
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    const owners = async (instanceId: string) =>
      (
        await pool.query<{ lane: string }>(
          "SELECT substr(lane, length('outbox:') + 1) AS lane FROM lane_leases WHERE owner = $1 AND lane LIKE 'outbox:%'",
          [instanceId],
        )
      ).rows.map((r) => r.lane);

    const [a, b] = [spawnSender("a"), spawnSender("b"), spawnSender("c")];
    await until("three senders ready", () => senders.every((s) => s.output().includes("ready")));

    // The producer: journals only (never started, so it sends nothing), like a handler on any instance.
    const producer = new Outbox({
      store: new PgOutboxStore(pool),
      transport: { send: () => Promise.reject(new Error("the producer never sends")) },
      appserviceId: "lanes-test",
      botUserId: userId("@bot:fake.test"),
    });
    const produce = async (from: number, to: number) => {
      for (let i = from; i < to; i += 100) {
        await Promise.all(
          Array.from({ length: Math.min(100, to - i) }, (_, k) => {
            const n = i + k;
            return producer.enqueue({
              kind: "send",
              roomId: roomId(`!room${n % ROOMS}:fake.test`),
              eventType: "m.room.message",
              content: { msgtype: "m.text", body: `message ${n}`, n },
              cause: `burst-${n}`,
              ordinal: 0,
            });
          }),
        );
      }
    };

    await produce(0, 2000);
    await until("a first part delivered", () => hs.stats.stored >= 600);
    // An instance gives back the lanes it has emptied at each renewal, so when the producer is the
    // slower side "a" may hold none at one instant: kill it while it holds some.
    let lanesOfA: string[] = [];
    await until("a holding lanes", async () => (lanesOfA = await owners("a")).length > 0);
    a.child.kill("SIGKILL");
    const killedAt = Date.now();
    // Requests a had on the wire may still land after the kill: count a's lanes once they have,
    // so a later delivery on them is a takeover, not a's own last send.
    await a.exited;
    await new Promise((resolve) => setTimeout(resolve, 200));
    const countsAtKill = new Map(lanesOfA.map((lane) => [lane, hs.roomEvents(lane.slice(5)).length]));
    await produce(2000, 3500);
    // Takeover: each of a's lanes that still had rows gets a delivery again.
    const resumedAfter = new Map<string, number>();
    const producing = produce(3500, COUNT);
    await until("a's lanes taken over", () => {
      for (const [lane, count] of countsAtKill) {
        if (!resumedAfter.has(lane) && hs.roomEvents(lane.slice(5)).length > count)
          resumedAfter.set(lane, Date.now() - killedAt);
      }
      const left = [...countsAtKill.keys()].filter(
        (lane) => !resumedAfter.has(lane) && hs.roomEvents(lane.slice(5)).length < COUNT / ROOMS,
      );
      return left.length === 0;
    });
    b.child.kill("SIGKILL");
    await producing;
    await until("some delivered without b", () => hs.stats.stored >= 4000);
    spawnSender("b");
    await until("all delivered", () => hs.stats.stored >= COUNT, 90_000);

    for (let r = 0; r < ROOMS; r++) {
      const bodies = hs.roomEvents(`!room${r}:fake.test`).map((e) => (e.content as { n: number }).n);
      expect(bodies).toEqual(Array.from({ length: COUNT / ROOMS }, (_, i) => i * ROOMS + r));
    }
    expect(hs.allRoomEvents()).toHaveLength(COUNT);
    const rows = await pool.query<{ state: string; n: number }>(
      "SELECT state, count(*)::integer AS n FROM outbox GROUP BY state",
    );
    await until("every row settled", async () => {
      const pending = await pool.query<{ n: number }>(
        "SELECT count(*)::integer AS n FROM outbox WHERE state = 'pending'",
      );
      return pending.rows[0]!.n === 0;
    });
    const takeover = [...resumedAfter.values()];
    // The figures for docs/scaling.md: how long a's lanes waited, and how many sends the
    // homeserver deduplicated (a head on the wire when its lane changed hands).
    console.log(
      JSON.stringify({
        lanesOfA: lanesOfA.length,
        takeoverMs: { min: Math.min(...takeover), max: Math.max(...takeover) },
        deduped: hs.stats.deduped,
        states: rows.rows,
      }),
    );
    await pool.end();
    const stillRunning = senders.filter((s) => s.child.exitCode === null && s.child.signalCode === null);
    // A sender restarted late may still be starting (its SIGTERM handler comes with "ready").
    await until("the running senders ready", () => stillRunning.every((s) => s.output().includes("ready")));
    for (const s of stillRunning) s.child.kill("SIGTERM");
    const codes = await Promise.all(stillRunning.map((s) => s.exited));
    expect(codes).toEqual(stillRunning.map(() => 0));
  }, 180_000);
});
