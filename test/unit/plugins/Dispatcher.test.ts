import { pino } from "pino";
import { Dispatcher, type ItemRunner } from "../../../src/plugins/Dispatcher.ts";
import { SqliteInboundJournal } from "../../../src/store/sqlite/SqliteInboundJournal.ts";
import type { InboundItem, NewInboundItem } from "../../../src/store/InboundStore.ts";

const silent = pino({ level: "silent" });
const event = (room: string, n: number): NewInboundItem => ({
  kind: "event",
  lane: `room:${room}`,
  eventId: `$${room}${n}`,
  json: JSON.stringify({ room, n }),
});

function setup(runner: ItemRunner, options: { maxDispatches?: number; maxBuffered?: number } = {}) {
  const journal = new SqliteInboundJournal({ path: ":memory:" });
  const dispatcher = new Dispatcher({ journal, runner, logger: silent, maxConcurrency: 4, ...options });
  return { journal, dispatcher };
}

describe("Dispatcher", () => {
  test("runs each room in journal order, rooms concurrently, and marks items done", async () => {
    const seen: string[] = [];
    let running = 0;
    let maxRunning = 0;
    const runner: ItemRunner = {
      async dispatch(item) {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise((r) => setTimeout(r, (item.seq * 7) % 5));
        seen.push(item.json);
        running--;
        return [];
      },
    };
    const { journal, dispatcher } = setup(runner);
    for (let t = 0; t < 10; t++)
      await journal.journal(`t${t}`, `h${t}`, [event("a", t), event("b", t), event("c", t)]);
    dispatcher.start();
    await dispatcher.onIdle();
    for (const room of ["a", "b", "c"]) {
      const order = seen
        .map((j) => JSON.parse(j) as { room: string; n: number })
        .filter((e) => e.room === room)
        .map((e) => e.n);
      expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
    expect(maxRunning).toBeGreaterThan(1);
    expect(await journal.totals()).toEqual({ pending: 0, done: 30, failed: 0 });
  });

  test("items journaled while running are picked up by wake()", async () => {
    const seen: number[] = [];
    const { journal, dispatcher } = setup({ dispatch: async (item) => (seen.push(item.seq), []) });
    dispatcher.start();
    await journal.journal("t1", "h1", [event("a", 1)]);
    dispatcher.wake();
    await journal.journal("t2", "h2", [event("a", 2)]);
    dispatcher.wake();
    await new Promise((r) => setTimeout(r, 20));
    await dispatcher.onIdle();
    expect(seen).toEqual([1, 2]);
  });

  test("handler failures settle the item failed with the reasons; the lane moves on", async () => {
    const { journal, dispatcher } = setup({
      dispatch: async (item: InboundItem) => (item.seq === 1 ? ["echo command echo: boom"] : []),
    });
    await journal.journal("t1", "h1", [event("a", 1), event("a", 2)]);
    dispatcher.start();
    await dispatcher.onIdle();
    expect(await journal.totals()).toEqual({ pending: 0, done: 1, failed: 1 });
  });

  test("an item dispatched too often (a handler that kills the process) is dead-lettered without running", async () => {
    let runs = 0;
    const { journal, dispatcher } = setup({ dispatch: async () => (runs++, []) }, { maxDispatches: 2 });
    await journal.journal("t1", "h1", [event("a", 1)]);
    // Two earlier runs that never finished (the process died each time).
    await journal.recordAttempt(1);
    await journal.recordAttempt(1);
    dispatcher.start();
    await dispatcher.onIdle();
    expect(runs).toBe(0);
    expect(await journal.totals()).toEqual({ pending: 0, done: 0, failed: 1 });
  });

  test("with a buffer smaller than the backlog it still drains everything, reading the journal in windows", async () => {
    let dispatched = 0;
    let maxSeenSeq = 0;
    const { journal, dispatcher } = setup(
      {
        async dispatch(item) {
          maxSeenSeq = Math.max(maxSeenSeq, item.seq);
          dispatched++;
          await new Promise((r) => setImmediate(r));
          return [];
        },
      },
      { maxBuffered: 8 },
    );
    for (let t = 0; t < 20; t++) await journal.journal(`t${t}`, `h${t}`, [event("a", t), event("b", t)]);
    dispatcher.start();
    await dispatcher.onIdle();
    expect(dispatched).toBe(40);
    expect(maxSeenSeq).toBe(40);
    expect(await journal.totals()).toEqual({ pending: 0, done: 40, failed: 0 });
  });

  test("stop() leaves unfinished items pending for the next start", async () => {
    let release: () => void = () => {};
    const { journal, dispatcher } = setup({
      dispatch: () => new Promise<string[]>((r) => (release = () => r([]))),
    });
    await journal.journal("t1", "h1", [event("a", 1), event("a", 2)]);
    dispatcher.start();
    await new Promise((r) => setTimeout(r, 10));
    const stopped = dispatcher.stop(1000);
    release();
    await stopped;
    expect((await journal.totals()).pending).toBeGreaterThanOrEqual(1);
  });

  test("onIdle() resolves once stopped, although items are left buffered (it used to wait forever)", async () => {
    let release: () => void = () => {};
    const { journal, dispatcher } = setup({
      dispatch: () => new Promise<string[]>((r) => (release = () => r([]))),
    });
    await journal.journal("t1", "h1", [event("a", 1), event("a", 2)]);
    dispatcher.start();
    await new Promise((r) => setTimeout(r, 10));
    const idle = dispatcher.onIdle();
    const stopped = dispatcher.stop(1000);
    release();
    await stopped;
    await idle;
    await dispatcher.onIdle();
    expect(await journal.totals()).toEqual({ pending: 1, done: 1, failed: 0 });
  });
});
