// Crash, outbound: Synapse rate-limits our ghosts (429s), the framework sends 500 messages across
// 5 rooms through 5 ghosts and is killed with SIGKILL mid-burst. After a restart /messages shows
// every message exactly once, in order, in every room.
import { E2eStack, eventually, SERVER_NAME, type User } from "./support/E2eStack.ts";

const ROOMS = 5;
const PER_ROOM = 100;
const BURST_PLUGIN = new URL("./support/burstPlugin.ts", import.meta.url).pathname;

describe("outbound crash against Synapse", () => {
  let stack: E2eStack;
  let alice: User;

  beforeAll(async () => {
    stack = await E2eStack.start({
      rateLimited: true,
      // Slower than Synapse can create events even on a loaded machine, so 429s are certain.
      rcMessage: { per_second: 2, burst_count: 1 },
      config: {
        plugins: [{ name: "burst", module: BURST_PLUGIN }],
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
    const rooms: string[] = [];
    for (let r = 0; r < ROOMS; r++) rooms.push(await stack.roomWithBot(alice, { preset: "public_chat" }));
    for (const [r, roomId] of rooms.entries())
      await stack.say(alice, roomId, `!burst ${PER_ROOM} @courier_g${r}:${SERVER_NAME}`);
    const count = async () => {
      let n = 0;
      for (const roomId of rooms)
        n += (await stack.messages(alice.accessToken, roomId)).filter((m) =>
          m.sender.startsWith("@courier_g"),
        ).length;
      return n;
    };
    const atKill = await eventually("the burst to be under way", 60_000, async () => {
      const n = await count();
      return n >= 60 ? n : undefined;
    });
    await courier.kill("SIGKILL");
    expect(atKill).toBeLessThan(ROOMS * PER_ROOM);
    const firstRunLines = courier.lines;

    courier = await stack.startCourier();
    await eventually("every message to arrive", 120_000, async () =>
      (await count()) >= ROOMS * PER_ROOM ? true : undefined,
    );
    await new Promise((r) => setTimeout(r, 2000)); // anything doubled would show up now
    for (const [r, roomId] of rooms.entries()) {
      const numbers = (await stack.messages(alice.accessToken, roomId))
        .filter((m) => m.sender === `@courier_g${r}:${SERVER_NAME}`)
        .map((m) => m.content.n);
      expect(numbers).toEqual(Array.from({ length: PER_ROOM }, (_, i) => i));
    }
    // Synapse really pushed back: the outbox saw 429s and waited them out.
    const limited = [...firstRunLines, ...courier.lines].filter((l) => l.includes("M_LIMIT_EXCEEDED"));
    expect(limited.length).toBeGreaterThan(0);
    await courier.kill("SIGTERM");
  }, 240_000);
});
