import { pino } from "pino";
import { PermanentRemoteError, RemoteUnavailableError } from "../../../src/errors.ts";
import {
  RemoteOutbox,
  type RemoteOutboxOptions,
  type RemoteRequest,
} from "../../../src/bridge/RemoteOutbox.ts";
import { SqlitePluginData } from "../../../src/store/sqlite/SqlitePluginData.ts";
import type { PluginStore } from "../../../src/store/PluginStore.ts";

const message = (eventId: string, channelId = "#c", text = eventId): RemoteRequest => ({
  kind: "message",
  message: {
    channelId,
    eventId,
    text,
    emote: false,
    relayed: true,
    sender: { userId: "@a:x", displayName: "a" },
  },
});
const textOf = (r: RemoteRequest) => (r.kind === "message" ? r.message.text : r.kind);

function outbox(store: PluginStore, overrides: Partial<RemoteOutboxOptions> = {}) {
  const delivered: string[] = [];
  const failed: Array<[string, string]> = [];
  const stopping = new AbortController();
  const box = new RemoteOutbox({
    store,
    log: pino({ level: "silent" }),
    deliver: async (r) => void delivered.push(textOf(r)),
    failed: async (r, reason) => void failed.push([textOf(r), reason]),
    rate: { perSecond: 10_000, burst: 10_000 },
    retryBaseMs: 1,
    stopping: stopping.signal,
    ...overrides,
  });
  return { box, delivered, failed, stop: () => stopping.abort() };
}

test("requests of a channel leave in order, once per event id even when enqueued again", async () => {
  const store = new SqlitePluginData({ path: ":memory:" }).forPlugin("b");
  const { box, delivered } = outbox(store);
  await box.start();
  for (let i = 0; i < 20; i++) await box.enqueue(message(`$${i}`), "relay");
  await box.enqueue(message("$3"), "relay");
  await box.idle();
  await box.enqueue(message("$3"), "relay");
  await box.idle();
  expect(delivered).toEqual(Array.from({ length: 20 }, (_, i) => `$${i}`));
});

test("what a stopped run left is sent by the next, in order, and nothing already sent goes again", async () => {
  const store = new SqlitePluginData({ path: ":memory:" }).forPlugin("b");
  // The first run never starts sending: everything it enqueued is still journaled.
  const first = outbox(store);
  for (let i = 0; i < 5; i++) await first.box.enqueue(message(`$${i}`), "relay");
  // A half-done enqueue: the mark is committed, the row is not (a crash between the two).
  await store.set("rout-ev:$5", { seq: Date.now() * 1000 + 5_000_000, at: Date.now() });
  const second = outbox(store);
  expect(await second.box.start()).toBe(5);
  await second.box.enqueue(message("$5"), "relay"); // the handler's replay finds the mark
  await second.box.idle();
  expect(second.delivered).toEqual(["$0", "$1", "$2", "$3", "$4", "$5"]);
  const third = outbox(store);
  expect(await third.box.start()).toBe(0);
  for (let i = 0; i < 6; i++) await third.box.enqueue(message(`$${i}`), "relay");
  await third.box.idle();
  expect(third.delivered).toEqual([]);
});

test("an unavailable network is waited for; a permanent refusal and repeated failures are reported once", async () => {
  const store = new SqlitePluginData({ path: ":memory:" }).forPlugin("b");
  let offline = 3;
  const tries = new Map<string, number>();
  const run = outbox(store, {
    maxAttempts: 2,
    deliver: async (r) => {
      const text = textOf(r);
      tries.set(text, (tries.get(text) ?? 0) + 1);
      if (offline-- > 0) throw new RemoteUnavailableError("net");
      if (text === "$refused") throw new PermanentRemoteError("net", "banned");
      if (text === "$flaky") throw new Error("boom");
      return undefined;
    },
  });
  await run.box.start();
  for (const id of ["$ok", "$refused", "$flaky", "$after"]) await run.box.enqueue(message(id), "relay");
  await run.box.idle();
  expect(tries.get("$ok")).toBe(4);
  expect(tries.get("$refused")).toBe(1);
  expect(tries.get("$flaky")).toBe(2);
  expect(tries.get("$after")).toBe(1);
  expect(run.failed.map(([t]) => t)).toEqual(["$refused", "$flaky"]);
  expect(run.failed[0]![1]).toContain("banned");
});
