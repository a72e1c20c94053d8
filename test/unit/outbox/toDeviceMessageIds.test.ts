// To-device messages carry `org.matrix.msgid`: the same on every replay of the same send, distinct
// between sends, never overwriting one the plugin set. It is what lets a recipient drop the
// duplicate a homeserver may deliver after it lost its in-memory dedupe (docs/guarantees.md).
import { Outbox } from "../../../src/outbox/Outbox.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import type { MatrixRequest } from "../../../src/matrix/requests.ts";
import { userId } from "../../../src/ids.ts";

async function send(calls: (scope: ReturnType<Outbox["cause"]>) => Promise<unknown>[], cause = "$e") {
  const sent: MatrixRequest[] = [];
  const outbox = new Outbox({
    store: new SqliteOutboxStore({ path: ":memory:" }),
    transport: { send: async (r) => (sent.push(r), {}) },
    appserviceId: "t",
    botUserId: userId("@bot:x"),
    toDevice: { maxDevices: 2 },
  });
  await outbox.start();
  await Promise.all(calls(outbox.cause(cause)));
  await outbox.onIdle();
  await outbox.stop();
  return sent.map(
    (r) => JSON.parse(r.body!) as { messages: Record<string, Record<string, Record<string, unknown>>> },
  );
}

const ids = (bodies: Awaited<ReturnType<typeof send>>) =>
  bodies.flatMap((b) =>
    Object.values(b.messages).flatMap((d) => Object.values(d).map((c) => c["org.matrix.msgid"])),
  );

test("each to-device send gets a message id, stable on replay, shared by its chunks, distinct between sends", async () => {
  const four = { "@a:x": { A1: { n: 1 }, A2: { n: 2 } }, "@b:x": { B1: { n: 3 }, B2: { n: 4 } } };
  const run = () => send((scope) => [scope.sendToDevice("m.test", four), scope.sendToDevice("m.test", four)]);
  const first = await run();
  const again = await run();
  expect(first).toHaveLength(4); // two sends, two chunks each
  expect(ids(first)).toEqual(ids(again));
  expect(new Set(ids(first)).size).toBe(2);
  expect(ids(first).every((id) => typeof id === "string" && id.length > 10)).toBe(true);
  expect(first[0]!.messages["@a:x"]!.A1).toMatchObject({ n: 1 });
});

test("a message id the plugin set is kept", async () => {
  const [body] = await send((scope) => [
    scope.sendToDevice("m.test", { "@a:x": { A1: { "org.matrix.msgid": "mine", n: 1 } } }),
  ]);
  expect(body!.messages["@a:x"]!.A1).toEqual({ "org.matrix.msgid": "mine", n: 1 });
});
