// An appservice may send as its bot and the users of its namespaces, nobody else. The outbox
// refuses any other sender at enqueue (NotOurUserError, M_EXCLUSIVE): nothing is journaled, no
// request leaves, no dead letter appears later.
import fc from "fast-check";
import { CourierError, NotOurUserError } from "../../../src/errors.ts";
import { roomId, userId, type UserId } from "../../../src/ids.ts";
import type { MatrixRequest } from "../../../src/matrix/requests.ts";
import { Outbox } from "../../../src/outbox/Outbox.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import { fuzzParameters } from "../../fuzz/support/fuzzParameters.ts";

const BOT = userId("@bot:hs.test");
const GHOSTS = /^@ghost_[a-z0-9]+:hs\.test$/;
const ROOM = roomId("!room:hs.test");

async function setup() {
  const store = new SqliteOutboxStore({ path: ":memory:" });
  const sent: MatrixRequest[] = [];
  const outbox = new Outbox({
    store,
    transport: { send: async (req) => (sent.push(req), { event_id: `$${sent.length}` }) },
    appserviceId: "sec",
    botUserId: BOT,
    rate: { perSecond: 1e6, burst: 1e6 },
    mayActAs: (id) => GHOSTS.test(id),
  });
  await outbox.start();
  return { store, sent, outbox };
}

test("room sends, state, redactions and to-device as a user outside the namespaces are refused at enqueue", async () => {
  const { store, sent, outbox } = await setup();
  const scope = outbox.cause("$cause");
  const stranger = { sender: userId("@notours:hs.test") };
  const attempts = [
    scope.send(ROOM, { msgtype: "m.text", body: "hi" }, stranger),
    scope.sendState(ROOM, "m.room.topic", "", { topic: "x" }, stranger),
    scope.redact(ROOM, "$e", "spam", stranger),
    scope.sendToDevice("org.example", { "@alice:hs.test": { "*": {} } }, stranger),
  ];
  for (const attempt of attempts) {
    const error = await attempt.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(NotOurUserError);
    expect(error).toBeInstanceOf(CourierError);
    expect(error).toMatchObject({ errcode: "M_EXCLUSIVE", status: 403, userId: "@notours:hs.test" });
    expect((error as Error).message).toContain(
      "@notours:hs.test is outside the appservice's user namespaces",
    );
  }
  // The bot and a ghost of the namespace go through.
  await scope.send(ROOM, { msgtype: "m.text", body: "bot" });
  await scope.send(ROOM, { msgtype: "m.text", body: "ghost" }, { sender: userId("@ghost_a:hs.test") });
  await outbox.onIdle();
  expect(await store.totals()).toEqual({ pending: 0, sent: 2, dead: 0 });
  expect(sent.map((r) => JSON.parse(r.body!).body)).toEqual(["bot", "ghost"]);
  expect(sent.some((r) => r.path.includes("notours"))).toBe(false);
  await outbox.stop();
});

test("no sender outside the namespaces gets a row, whatever the user id (fuzzed)", async () => {
  const { store, outbox } = await setup();
  const localpart = fc.stringMatching(/^[a-z0-9._=\-/]{1,20}$/);
  const outsider = fc
    .oneof(
      localpart.map((l) => `@${l}:hs.test`),
      localpart.map((l) => `@ghost_${l}:other.test`),
      localpart.map((l) => `@ghost_${l}:hs.test.evil`),
      localpart.map((l) => `@x${l}ghost_a:hs.test`),
    )
    .filter((id) => !GHOSTS.test(id) && id !== BOT);
  await fc.assert(
    fc.asyncProperty(outsider, async (id) => {
      await expect(
        outbox.cause(`c-${id}`).send(ROOM, { body: "x" }, { sender: id as UserId }),
      ).rejects.toBeInstanceOf(NotOurUserError);
    }),
    fuzzParameters("masquerade senders", { numRuns: 200, timeLimitMs: 5000 }),
  );
  expect(await store.totals()).toEqual({ pending: 0, sent: 0, dead: 0 });
  await outbox.stop();
});
