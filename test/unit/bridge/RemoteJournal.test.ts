import { pino } from "pino";
import { RemoteJournal, type JournaledRemote } from "../../../src/bridge/RemoteJournal.ts";
import { MatrixError, MatrixNetworkError } from "../../../src/matrix/MatrixError.ts";
import { SqlitePluginData } from "../../../src/store/sqlite/SqlitePluginData.ts";
import type { PluginStore } from "../../../src/store/PluginStore.ts";

const sender = { id: "ann", displayName: "ann" };
function journal(store: PluginStore, act: (e: JournaledRemote) => Promise<void>) {
  const stopping = new AbortController();
  return new RemoteJournal({
    store,
    log: pino({ level: "silent" }),
    act,
    stopping: stopping.signal,
    retryBaseMs: 1,
  });
}

test("events are acted on in order per channel; a redelivered remote id is acted on once", async () => {
  const store = new SqlitePluginData({ path: ":memory:" }).forPlugin("b");
  const seen: string[] = [];
  const j = journal(
    store,
    async (e) => void seen.push(`${e.lane}:${e.event.kind === "message" ? e.event.text : ""}`),
  );
  await j.start();
  for (let i = 0; i < 10; i++) await j.report({ kind: "message", channelId: "#a", sender, text: `a${i}` });
  await j.report({ kind: "message", channelId: "#b", id: "m1", sender, text: "b-once" });
  await j.report({ kind: "message", channelId: "#b", id: "m1", sender, text: "b-once" });
  await j.idle();
  expect(seen.filter((s) => s.startsWith("#a"))).toEqual(Array.from({ length: 10 }, (_, i) => `#a:a${i}`));
  expect(seen.filter((s) => s.startsWith("#b"))).toEqual(["#b:b-once"]);
  expect(await store.list("rin:")).toEqual([]);
});

test("what was journaled but not acted on is replayed by the next run under the id it was given", async () => {
  const store = new SqlitePluginData({ path: ":memory:" }).forPlugin("b");
  const first = journal(store, async () => {
    throw new Error("not acted on");
  });
  // Not started: reports are journaled, none acted on (a crash right after journaling).
  for (let i = 0; i < 3; i++) await first.report({ kind: "message", channelId: "#a", sender, text: `x${i}` });
  const ids = (await store.list<JournaledRemote>("rin:")).map((e) => e.value.id);
  const replayed: string[] = [];
  const second = journal(store, async (e) => void replayed.push(e.id));
  expect(await second.start()).toBe(3);
  await second.idle();
  expect(replayed).toEqual(ids);
});

test("a homeserver that is away delays an event without limit; one that refuses it sets it aside", async () => {
  const store = new SqlitePluginData({ path: ":memory:" }).forPlugin("b");
  let tries = 0;
  const j = new RemoteJournal({
    store,
    log: pino({ level: "silent" }),
    stopping: new AbortController().signal,
    retryBaseMs: 1,
    maxAttempts: 3,
    act: async (e) => {
      if (e.event.kind !== "message") return;
      if (e.event.text === "refused") throw new MatrixError(403, { errcode: "M_FORBIDDEN" });
      // Away for more tries than maxAttempts, then back.
      if (++tries <= 6) throw new MatrixNetworkError("connect ECONNREFUSED", "ECONNREFUSED");
    },
  });
  await j.start();
  await j.report({ kind: "message", channelId: "#a", sender, text: "delayed" });
  await j.report({ kind: "message", channelId: "#b", sender, text: "refused" });
  await j.idle();
  expect(tries).toBe(7);
  expect((await store.list<{ event: { text: string } }>("rdead:")).map((e) => e.value.event.text)).toEqual([
    "refused",
  ]);
  expect(await store.list("rin:")).toEqual([]);
});
