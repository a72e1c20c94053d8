// Crash, inbound: the framework dies right after journaling a transaction, before dispatching
// it. After a restart the handler runs and exactly one reply appears.
import { E2eStack, eventually, type User } from "./support/E2eStack.ts";
import { untilSynapseCaughtUp } from "./support/transactionLog.ts";

describe("inbound crash against Synapse", () => {
  let stack: E2eStack;
  let alice: User;

  beforeAll(async () => {
    stack = await E2eStack.start();
    alice = await stack.user("alice");
  }, 120_000);
  afterAll(async () => stack?.stop(), 30_000);

  test("killed between journal and dispatch: after restart, one reply", async () => {
    let courier = await stack.startCourier();
    const roomId = await stack.roomWithBot(alice);
    await courier.kill("SIGTERM");

    courier = await stack.startCourier({ COURIER_FAULT: "kill-after-journal" });
    await stack.say(alice, roomId, "!echo exactly once");
    expect(await courier.exited).toBe(null); // killed by SIGKILL, right after the commit
    expect(
      (await stack.messages(alice.accessToken, roomId)).filter((m) => m.sender === stack.botUserId),
    ).toHaveLength(0);

    courier = await stack.startCourier();
    await eventually("the reply", 30_000, async () => {
      const replies = (await stack.messages(alice.accessToken, roomId)).filter(
        (m) => m.sender === stack.botUserId,
      );
      return replies.length > 0 ? replies : undefined;
    });
    // Synapse resends the transaction the killed process journaled but never answered: wait until
    // it has its 200 (Synapse deletes a transaction once acknowledged, and is back to "up")...
    await untilSynapseCaughtUp(stack, 60_000);
    // ...and until a later command's echo is there: anything the resend was handled into ran
    // before it (the room's events run in order) and was sent before it (one room lane, in order).
    await stack.say(alice, roomId, "!echo marker");
    const replies = await eventually("the marker's echo", 30_000, async () => {
      const fromBot = (await stack.messages(alice.accessToken, roomId)).filter(
        (m) => m.sender === stack.botUserId,
      );
      return fromBot.some((m) => m.content.body === "marker") ? fromBot : undefined;
    });
    expect(replies.map((m) => m.content.body)).toEqual(["exactly once", "marker"]);
    await courier.kill("SIGTERM");
  }, 120_000);
});
