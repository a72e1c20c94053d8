// The homeserver goes away for a long time (connection refused), with lanes in the middle of a
// burst. The outbox must back off to its cap (not hammer the address, not give up), keep every
// request journaled, dead-letter nothing, and deliver everything exactly once, in order per
// lane, when the homeserver comes back on the same address.
//
// The fake homeserver is enough here: what matters is what the outbox does while nobody answers,
// and the fake can be stopped and started again on the same port within a test. The real
// Synapse's side of an outage is in test/e2e/outage.test.ts.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MatrixClient } from "../../src/matrix/MatrixClient.ts";
import { Outbox } from "../../src/outbox/Outbox.ts";
import { SqliteOutboxStore } from "../../src/store/sqlite/SqliteOutboxStore.ts";
import { roomId, userId } from "../../src/ids.ts";
import { FakeHomeserver } from "../support/FakeHomeserver.ts";

const TOKEN = "outage-as-token";
const LANES = 10;
const PER_LANE = 30;
const BASE_MS = 50;
const CAP_MS = 400;
const DOWN_MS = 4_000;

test("homeserver down for a long time: backoff to the cap, nothing lost or dead, caught up once, in order", async () => {
  const dir = mkdtempSync(join(tmpdir(), "courier-outage-"));
  let hs = await FakeHomeserver.start({ asToken: TOKEN, seed: 5 });
  const port = hs.port;
  const store = new SqliteOutboxStore({ path: join(dir, "outbox.sqlite") });
  const client = new MatrixClient({ homeserverUrl: hs.url, accessToken: TOKEN, timeoutMs: 2_000 });
  const outbox = new Outbox({
    store,
    transport: client,
    appserviceId: "outage",
    botUserId: userId("@bot:fake.test"),
    maxConcurrency: 16,
    rate: { perSecond: 1e6, burst: 1e6 },
    retry: { baseMs: BASE_MS, capMs: CAP_MS },
  });
  const retries = new Map<string, number[]>();
  outbox.on("retry", (row, _reason, delayMs) => {
    retries.set(row.lane, [...(retries.get(row.lane) ?? []), delayMs]);
  });
  const room = (lane: number) => roomId(`!lane${lane}:fake.test`);
  const enqueue = async (from: number, to: number) => {
    for (let n = from; n < to; n++) {
      for (let lane = 0; lane < LANES; lane++) {
        await outbox.enqueue({
          kind: "send",
          roomId: room(lane),
          eventType: "m.room.message",
          content: { body: `${lane}/${n}`, n },
          cause: `outage-${lane}-${n}`,
          ordinal: 0,
        });
      }
    }
  };
  try {
    await outbox.start();
    const half = PER_LANE / 2;
    await enqueue(0, half);
    await outbox.onIdle();
    const before = hs;
    await hs.stop();

    await enqueue(half, PER_LANE);
    await new Promise((r) => setTimeout(r, DOWN_MS));
    // Down: everything still journaled, nothing given up.
    expect(await store.totals()).toEqual({ pending: LANES * half, sent: LANES * half, dead: 0 });
    expect(retries.size).toBe(LANES);
    const hops = Math.ceil(Math.log2(CAP_MS / BASE_MS)) + 1;
    for (const delays of retries.values()) {
      expect(Math.max(...delays)).toBeLessThanOrEqual(CAP_MS);
      // Reached the cap: the last delays are at least its lower jitter bound.
      expect(delays.at(-1)).toBeGreaterThanOrEqual(CAP_MS / 2);
      // No busy loop: at most as many tries as the capped backoff allows in the time
      // (a slow machine makes fewer, never more).
      expect(delays.length).toBeLessThanOrEqual(hops + Math.ceil(DOWN_MS / (CAP_MS / 2)) + 2);
    }

    hs = await FakeHomeserver.start({ asToken: TOKEN, seed: 5, port });
    await outbox.onIdle();
    for (let lane = 0; lane < LANES; lane++) {
      const n = (events: ReturnType<FakeHomeserver["roomEvents"]>) => events.map((e) => e.content.n);
      expect(n(before.roomEvents(room(lane)))).toEqual(Array.from({ length: half }, (_, i) => i));
      expect(n(hs.roomEvents(room(lane)))).toEqual(Array.from({ length: half }, (_, i) => half + i));
    }
    expect(await store.totals()).toEqual({ pending: 0, sent: LANES * PER_LANE, dead: 0 });
    expect(hs.stats.deduped).toBe(0);
  } finally {
    await outbox.stop(1_000);
    await client.close();
    await hs.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
