// Crash safety, proven: a child process enqueues a burst through the outbox while the fake
// homeserver answers with 429s, 5xx, resets and lost answers; it is killed with SIGKILL at seeded
// random moments and restarted on the same database. At the end the homeserver must hold every
// message exactly once, in enqueue order per room.
import { spawn, type ChildProcess } from "node:child_process";
import { DatabaseSync } from "node:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FakeHomeserver, mulberry32 } from "../support/FakeHomeserver.ts";

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

describe("outbox crash safety", () => {
  let hs: FakeHomeserver;
  let dir: string;

  beforeAll(async () => {
    hs = await FakeHomeserver.start({ asToken: TOKEN, seed: SEED });
    dir = mkdtempSync(join(tmpdir(), "courier-crash-"));
  });
  afterAll(async () => {
    await hs.stop();
    rmSync(dir, { recursive: true, force: true });
  });

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
      db: join(dir, "outbox.sqlite"),
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
      // Node's start-up takes ~150 ms; kill somewhere in the burst after that.
      await new Promise((r) => setTimeout(r, 300 + Math.floor(random() * 900)));
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
    const journal = new DatabaseSync(options.db, { readOnly: true });
    expect(journal.prepare("SELECT COUNT(*) AS n, COUNT(DISTINCT txn_id) AS ids FROM outbox").get()).toEqual({
      n: COUNT,
      ids: COUNT,
    });
    journal.close();
  }, 120_000);
});
