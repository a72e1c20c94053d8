import { jest } from "@jest/globals";
import { pino } from "pino";
import { JournalUnavailableError } from "../../../src/errors.ts";
import { Dispatcher, type DispatcherOptions, type ItemRunner } from "../../../src/inbound/Dispatcher.ts";
import { SqliteInboundJournal } from "../../../src/store/sqlite/SqliteInboundJournal.ts";
import type { InboundItem, InboundRecordBatch, NewInboundItem } from "../../../src/inbound/InboundJournal.ts";
import type { LaneOwnership, LaneOwnershipEvents } from "../../../src/inbound/LaneOwnership.ts";

const silent = pino({ level: "silent" });
const event = (room: string, n: number): NewInboundItem => ({
  kind: "event",
  lane: `room:${room}`,
  key: `event:$${room}${n}`,
  eventId: `$${room}${n}`,
  json: JSON.stringify({ room, n }),
});

function setup(runner: ItemRunner, options: Partial<DispatcherOptions> = {}) {
  const journal = new SqliteInboundJournal({ path: ":memory:" });
  const dispatcher = new Dispatcher({ journal, runner, logger: silent, maxConcurrency: 4, ...options });
  return { journal, dispatcher };
}

/** Records every `record` call of a journal (the group commits). */
function countCommits(journal: SqliteInboundJournal): InboundRecordBatch[] {
  const batches: InboundRecordBatch[] = [];
  const record = journal.record.bind(journal);
  journal.record = (batch) => (batches.push(batch), record(batch));
  return batches;
}

const attemptsOf = async (journal: SqliteInboundJournal) =>
  (await journal.pending(0, 100)).items.map((i) => i.attempts);

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
      await journal.journal(`t${t}`, [event("a", t), event("b", t), event("c", t)]);
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
    expect(await journal.totals()).toEqual({ pending: 0, done: 30, dead: 0, rejected: 0 });
  });

  test("offered items run without reading the journal back; bookkeeping is group-committed", async () => {
    const seen: number[] = [];
    const { journal, dispatcher } = setup({ dispatch: async (item) => (seen.push(item.seq), []) });
    dispatcher.start();
    await dispatcher.onIdle();
    const pending = jest.spyOn(journal, "pending");
    const commits = countCommits(journal);
    for (let t = 0; t < 5; t++) {
      const items = Array.from({ length: 20 }, (_, i) => event(`r${i % 10}`, t * 20 + i));
      dispatcher.offer(await journal.journal(`t${t}`, items));
    }
    await dispatcher.onIdle();
    expect(seen).toHaveLength(100);
    expect(pending).not.toHaveBeenCalled();
    expect(await journal.totals()).toMatchObject({ pending: 0, done: 100 });
    // 100 items: counted as they were journaled; settled in far fewer commits than items.
    expect(commits.flatMap((b) => b.begun)).toHaveLength(0);
    expect(commits.flatMap((b) => b.settled)).toHaveLength(100);
    expect(commits.length).toBeLessThan(40);
  });

  test("an offer that is not next to what was read is read from the journal instead", async () => {
    const seen: number[] = [];
    const { journal, dispatcher } = setup({ dispatch: async (item) => (seen.push(item.seq), []) });
    dispatcher.start();
    await dispatcher.onIdle();
    await journal.journal("missed", [event("a", 1)]); // never offered
    dispatcher.offer(await journal.journal("t2", [event("a", 2)]));
    await dispatcher.onIdle();
    expect(seen).toEqual([1, 2]);
  });

  test("items journaled while running are picked up by wake()", async () => {
    const seen: number[] = [];
    const { journal, dispatcher } = setup({ dispatch: async (item) => (seen.push(item.seq), []) });
    dispatcher.start();
    await journal.journal("t1", [event("a", 1)]);
    dispatcher.wake();
    await journal.journal("t2", [event("a", 2)]);
    dispatcher.wake();
    await dispatcher.onIdle();
    expect(seen).toEqual([1, 2]);
  });

  test("handler failures settle the item dead with the reasons; the lane moves on", async () => {
    const dead: string[] = [];
    const { journal, dispatcher } = setup(
      { dispatch: async (item: InboundItem) => (item.seq === 1 ? ["echo command echo: boom"] : []) },
      { onDead: (_item, reason) => dead.push(reason) },
    );
    await journal.journal("t1", [event("a", 1), event("a", 2)]);
    dispatcher.start();
    await dispatcher.onIdle();
    expect(await journal.totals()).toEqual({ pending: 0, done: 1, dead: 1, rejected: 0 });
    expect(dead).toEqual(["echo command echo: boom"]);
  });

  test("an item dispatched too often (a handler that kills the process) is dead-lettered without running", async () => {
    let runs = 0;
    const { journal, dispatcher } = setup({ dispatch: async () => (runs++, []) }, { maxDispatches: 2 });
    await journal.journal("t1", [event("a", 1), event("a", 2)]);
    // Two earlier dispatches of the first that never finished (the process died each time): one
    // counted as it was journaled, one as it began again.
    await journal.record({ begun: [1], settled: [] });
    dispatcher.start();
    await dispatcher.onIdle();
    expect(runs).toBe(1); // the second item only
    expect(await journal.list({ state: "dead", limit: 5 })).toEqual([
      expect.objectContaining({ seq: 1, attempts: 3, error: "dispatched 2 times without finishing" }),
    ]);
  });

  test("a crash's leftovers are counted again as they begin, not before; new items only as journaled", async () => {
    const { journal, dispatcher } = setup({ dispatch: () => new Promise<string[]>(() => {}) });
    await journal.journal("t1", [event("a", 1), event("a", 2), event("a", 3)]);
    await journal.record({ begun: [1], settled: [] }); // one had begun again, then the crash
    dispatcher.start();
    for (let i = 0; i < 20 && (await attemptsOf(journal))[0] !== 3; i++)
      await new Promise((r) => setImmediate(r));
    dispatcher.offer(await journal.journal("t2", [event("b", 4)]));
    await new Promise((r) => setImmediate(r));
    // The head (hanging) is counted again; the leftovers behind it are not; the new one is not
    // counted twice.
    expect(await attemptsOf(journal)).toEqual([3, 1, 1, 1]);
    await dispatcher.stop(10);
  });

  test("a dispatch that throws (not the store) runs again against its budget, then is dead-lettered; the room goes on", async () => {
    const runs: number[] = [];
    const { journal, dispatcher } = setup(
      {
        async dispatch(item) {
          runs.push(item.seq);
          if (item.seq === 1) throw new TypeError("Cannot read properties of undefined (reading 'body')");
          return [];
        },
      },
      { maxDispatches: 3, failurePauseMs: 1 },
    );
    dispatcher.start();
    await dispatcher.onIdle();
    dispatcher.offer(await journal.journal("t1", [event("a", 1), event("a", 2)]));
    await dispatcher.onIdle();
    expect(runs).toEqual([1, 1, 1, 2]);
    expect(await journal.list({ state: "dead", limit: 5 })).toEqual([
      expect.objectContaining({
        seq: 1,
        attempts: 4,
        error:
          "dispatched 3 times without finishing; last error: Cannot read properties of undefined (reading 'body')",
      }),
    ]);
    expect(await journal.totals()).toMatchObject({ pending: 0, done: 1, dead: 1 });
  });

  test("a store fault pauses the lane and runs the item again, without counting it", async () => {
    let runs = 0;
    const { journal, dispatcher } = setup({
      async dispatch() {
        runs++;
        if (runs === 1) throw new JournalUnavailableError(new Error("disk full"));
        return [];
      },
    });
    const commits = countCommits(journal);
    jest.useFakeTimers({ doNotFake: ["setImmediate", "nextTick", "queueMicrotask"] });
    try {
      await journal.journal("t1", [event("a", 1)]);
      dispatcher.start();
      while (runs === 0) await new Promise((r) => setImmediate(r));
      await jest.advanceTimersByTimeAsync(1_000);
      await dispatcher.onIdle();
    } finally {
      jest.useRealTimers();
    }
    expect(runs).toBe(2);
    // Counted once as a leftover (journaled before the start), not again after the fault.
    expect(commits.flatMap((b) => b.begun)).toEqual([1]);
    expect(await journal.totals()).toMatchObject({ pending: 0, done: 1 });
  });

  test("an outcome the store could not record is recorded again; the handlers do not run again", async () => {
    let runs = 0;
    const { journal, dispatcher } = setup({ dispatch: async () => (runs++, []) });
    const record = journal.record.bind(journal);
    let failSettles = 1;
    journal.record = (batch) =>
      batch.settled.length > 0 && failSettles-- > 0
        ? Promise.reject(new Error("disk I/O error"))
        : record(batch);
    jest.useFakeTimers({ doNotFake: ["setImmediate", "nextTick", "queueMicrotask"] });
    try {
      await journal.journal("t1", [event("a", 1)]);
      dispatcher.start();
      while (failSettles > 0) await new Promise((r) => setImmediate(r));
      await jest.advanceTimersByTimeAsync(1_000);
      await dispatcher.onIdle();
    } finally {
      jest.useRealTimers();
    }
    expect(runs).toBe(1);
    expect(await journal.totals()).toMatchObject({ pending: 0, done: 1 });
  });

  test("a room's next item runs before its predecessor's outcome is committed; it leaves the buffer once committed", async () => {
    const seen: number[] = [];
    const { journal, dispatcher } = setup({ dispatch: async (item) => (seen.push(item.seq), []) });
    const record = journal.record.bind(journal);
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    journal.record = async (batch) => (await gate, record(batch));
    dispatcher.start();
    await dispatcher.onIdle();
    // Fresh items: their first dispatch was counted as they were journaled.
    dispatcher.offer(await journal.journal("t1", [event("a", 1), event("a", 2), event("a", 3)]));
    let idle = false;
    void dispatcher.onIdle().then(() => (idle = true));
    for (let turns = 0; seen.length < 3 && turns < 100; turns++) await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([1, 2, 3]); // no outcome committed yet
    expect(await journal.totals()).toMatchObject({ pending: 3, done: 0 });
    expect(idle).toBe(false);
    open();
    await dispatcher.onIdle();
    expect(await journal.totals()).toMatchObject({ pending: 0, done: 3 });
  });

  test("a slow room holds at most its share of the buffer: other rooms go on, and it catches up in order", async () => {
    const seen: string[] = [];
    let releaseA: () => void = () => {};
    const aBlocked = new Promise<void>((r) => (releaseA = r));
    const { journal, dispatcher } = setup(
      {
        async dispatch(item) {
          const { room, n } = JSON.parse(item.json) as { room: string; n: number };
          if (room === "a" && n === 0) await aBlocked;
          seen.push(`${room}${n}`);
          return [];
        },
      },
      { maxBuffered: 20, maxBufferedPerLane: 5 },
    );
    dispatcher.start();
    for (let n = 0; n < 50; n++) dispatcher.offer(await journal.journal(`a${n}`, [event("a", n)]));
    dispatcher.offer(await journal.journal("b", [event("b", 0)]));
    while (!seen.includes("b0")) await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(["b0"]);
    releaseA();
    await dispatcher.onIdle();
    expect(seen.filter((s) => s.startsWith("a"))).toEqual(Array.from({ length: 50 }, (_, n) => `a${n}`));
    expect(await journal.totals()).toMatchObject({ pending: 0, done: 51 });
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
    for (let t = 0; t < 20; t++) await journal.journal(`t${t}`, [event("a", t), event("b", t)]);
    dispatcher.start();
    await dispatcher.onIdle();
    expect(dispatched).toBe(40);
    expect(maxSeenSeq).toBe(40);
    expect(await journal.totals()).toMatchObject({ pending: 0, done: 40, dead: 0 });
  });

  test("stop() waits for the running handler and leaves the items behind it pending for the next start", async () => {
    let release: () => void = () => {};
    let started = false;
    const { journal, dispatcher } = setup({
      dispatch: () => new Promise<string[]>((r) => ((started = true), (release = () => r([])))),
    });
    await journal.journal("t1", [event("a", 1), event("a", 2)]);
    dispatcher.start();
    while (!started) await new Promise((r) => setImmediate(r));
    const stopped = dispatcher.stop(1000);
    release();
    await stopped;
    expect(await journal.totals()).toMatchObject({ pending: 1, done: 1 });
  });

  test("onIdle() resolves once stopped, although items are left buffered (it used to wait forever)", async () => {
    let release: () => void = () => {};
    let started = false;
    const { journal, dispatcher } = setup({
      dispatch: () => new Promise<string[]>((r) => ((started = true), (release = () => r([])))),
    });
    await journal.journal("t1", [event("a", 1), event("a", 2)]);
    dispatcher.start();
    while (!started) await new Promise((r) => setImmediate(r));
    const idle = dispatcher.onIdle();
    const stopped = dispatcher.stop(1000);
    release();
    await stopped;
    await idle;
    await dispatcher.onIdle();
    expect(await journal.totals()).toMatchObject({ pending: 1, done: 1 });
  });

  describe("with lanes leased among instances", () => {
    /** Leases another instance holds unless the test hands them over; a claim never wins. */
    class HandedOverLeases implements LaneOwnership {
      readonly instanceId = "this";
      readonly held = new Set<string>();
      events: LaneOwnershipEvents | undefined;
      owns = (lane: string) => this.held.has(lane);
      ownedCount = () => this.held.size;
      claim = () => Promise.resolve(false);
      start = (events: LaneOwnershipEvents) => ((this.events = events), Promise.resolve());
      stop = () => Promise.resolve();
    }
    const settled = () => new Promise((r) => setTimeout(r, 20));

    // PgLaneLeases takes a lane announced by NOTIFY itself and only says the lane grew: the
    // dispatcher's cursor is past the items it saw while another instance held the lane.
    test("a lane taken over after its items were passed over runs them first, in journal order", async () => {
      const seen: string[] = [];
      const ownership = new HandedOverLeases();
      const { journal, dispatcher } = setup(
        { dispatch: async (item) => (seen.push(item.eventId!), []) },
        { ownership },
      );
      await dispatcher.start();
      dispatcher.offer(await journal.journal("t1", [event("a", 0), event("b", 0)]));
      await settled();
      expect(seen).toEqual([]); // another instance holds both rooms

      ownership.held.add("room:a");
      ownership.events!.grew(["room:a"]);
      dispatcher.offer(await journal.journal("t2", [event("a", 1)]));
      await dispatcher.onIdle();
      await settled();
      expect(seen).toEqual(["$a0", "$a1"]);
      expect(await journal.totals()).toMatchObject({ pending: 1, done: 2 }); // b's is its owner's
    });

    test("items dropped when the lease went are read again, first, when the lane comes back", async () => {
      const seen: string[] = [];
      let release: () => void = () => {};
      const ownership = new HandedOverLeases();
      ownership.held.add("room:a");
      const { journal, dispatcher } = setup(
        {
          dispatch: (item) =>
            new Promise<string[]>((r) => {
              seen.push(item.eventId!);
              if (item.eventId === "$a0") release = () => r([]);
              else r([]);
            }),
        },
        { ownership },
      );
      await dispatcher.start();
      dispatcher.offer(await journal.journal("t1", [event("a", 0), event("a", 1)]));
      while (seen.length === 0) await new Promise((r) => setImmediate(r));
      ownership.held.delete("room:a"); // the lease lapsed while $a0's handler ran
      release();
      await settled();
      expect(seen).toEqual(["$a0"]); // $a1 stays pending for the lane's owner

      ownership.held.add("room:a");
      ownership.events!.grew(["room:a"]);
      dispatcher.offer(await journal.journal("t2", [event("a", 2)]));
      await dispatcher.onIdle();
      await settled();
      expect(seen).toEqual(["$a0", "$a1", "$a2"]);
    });
  });
});
