// The framework against a real Synapse: a real user talks to the bot in a room and over
// to-device, both ways.
import { randomBytes } from "node:crypto";
import { E2eStack, eventually, type CourierProcess, type User } from "./support/E2eStack.ts";

describe("courier with a real Synapse", () => {
  let stack: E2eStack;
  let courier: CourierProcess;
  let alice: User;

  beforeAll(async () => {
    stack = await E2eStack.start();
    courier = await stack.startCourier();
    alice = await stack.user("alice");
  }, 120_000);
  afterAll(async () => {
    await courier?.kill("SIGTERM");
    await stack?.stop();
  }, 30_000);

  test("the start-up ping proved both directions", async () => {
    await courier.waitForLog(/homeserver ping: both directions work/, 10_000);
  });

  test("!echo in a room the bot was invited to is answered, once", async () => {
    const roomId = await stack.roomWithBot(alice);
    await stack.say(alice, roomId, "!echo hi");
    const replies = await eventually("the echo", 20_000, async () => {
      const fromBot = (await stack.messages(alice.accessToken, roomId)).filter(
        (m) => m.sender === stack.botUserId,
      );
      return fromBot.length > 0 ? fromBot : undefined;
    });
    expect(replies[0]!.content).toMatchObject({ msgtype: "m.notice", body: "hi" });
    // Nothing more arrives later (no duplicate from a retry): checked once a later command's echo
    // is there. Synapse pushes in order, the room's events run in order and the bot's sends to the
    // room leave in order, so a second echo of "hi" would be before it.
    await stack.say(alice, roomId, "!echo marker");
    const all = await eventually("the marker's echo", 20_000, async () => {
      const fromBot = (await stack.messages(alice.accessToken, roomId)).filter(
        (m) => m.sender === stack.botUserId,
      );
      return fromBot.some((m) => m.content.body === "marker") ? fromBot : undefined;
    });
    expect(all.map((m) => m.content.body)).toEqual(["hi", "marker"]);
  }, 60_000);

  test("a to-device ping from a real device is answered with a pong to that device over /sync", async () => {
    // Start a sync stream first, so the pong is a new to-device event after `since`.
    const initial = await stack.call<{ next_batch: string }>(
      alice.accessToken,
      "GET",
      "/_matrix/client/v3/sync?timeout=0",
    );
    const nonce = randomBytes(8).toString("hex");
    await stack.call(alice.accessToken, "PUT", `/_matrix/client/v3/sendToDevice/m.courier.ping/${nonce}`, {
      messages: { [stack.botUserId]: { "*": { device_id: alice.deviceId, nonce } } },
    });
    let since = initial.next_batch;
    const pong = await eventually("the pong over /sync", 30_000, async () => {
      const sync = await stack.call<{
        next_batch: string;
        to_device?: { events: Array<{ type: string; sender: string; content: { nonce?: string } }> };
      }>(alice.accessToken, "GET", `/_matrix/client/v3/sync?timeout=1000&since=${encodeURIComponent(since)}`);
      since = sync.next_batch;
      return sync.to_device?.events.find((e) => e.type === "m.courier.pong" && e.content.nonce === nonce);
    });
    expect(pong.sender).toBe(stack.botUserId);
  }, 60_000);
});
