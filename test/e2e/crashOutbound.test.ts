// Crash, outbound: Synapse rate-limits our ghosts (429s), the framework sends 500 messages across
// 5 rooms through 5 ghosts and is killed with SIGKILL mid-burst. After a restart /messages shows
// every message exactly once, in order, in every room: counted once a marker each ghost sends
// last has arrived (anything sent twice leaves before it, in the same room lane).
import { E2eStack, type User } from "./support/E2eStack.ts";
import { BURST_PLUGIN, GhostBurst } from "./support/ghostBurst.ts";

const ROOMS = 5;
const PER_ROOM = 100;

describe("outbound crash against Synapse", () => {
  let stack: E2eStack;
  let alice: User;

  beforeAll(async () => {
    stack = await E2eStack.start({
      rateLimited: true,
      // Slower than Synapse can create events even on a loaded machine, so 429s are certain.
      rcMessage: { per_second: 2, burst_count: 1 },
      config: {
        plugins: [BURST_PLUGIN],
        logging: { level: "debug" },
        // Our own bucket is generous on purpose: this test wants Synapse's 429s.
        outbox: { rate: { perSecond: 1000, burst: 1000 }, retry: { baseMs: 100, capMs: 2000 } },
      },
    });
    alice = await stack.user("alice");
  }, 120_000);
  afterAll(async () => stack?.stop(), 30_000);

  test(`${ROOMS * PER_ROOM} ghost messages, SIGKILL mid-burst: each exactly once, in order`, async () => {
    let courier = await stack.startCourier();
    // No proxy: Synapse's rate limit is the latency.
    const burst = await GhostBurst.start(stack, alice, { rooms: ROOMS, perRoom: PER_ROOM, ghostPrefix: "g" });
    const atKill = await burst.underWay(60);
    await courier.kill("SIGKILL");
    expect(atKill).toBeLessThan(ROOMS * PER_ROOM);
    const firstRunLines = courier.lines;

    courier = await stack.startCourier();
    await burst.allArrived();
    burst.expectEachOnceInOrder(await burst.settled());
    // Synapse really pushed back: the outbox saw 429s and waited them out.
    const limited = [...firstRunLines, ...courier.lines].filter((l) => l.includes("M_LIMIT_EXCEEDED"));
    expect(limited.length).toBeGreaterThan(0);
    await courier.kill("SIGTERM");
  }, 240_000);
});
