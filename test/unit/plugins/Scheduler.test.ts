import { pino } from "pino";
import { Scheduler, type SchedulerClock } from "../../../src/plugins/Scheduler.ts";
import { parseSchedule } from "../../../src/plugins/schedule.ts";
import { SqlitePluginData } from "../../../src/store/sqlite/SqlitePluginData.ts";

/** A clock the test moves by hand; timers fire only when the test says so. */
class ManualClock implements SchedulerClock {
  time: number;
  timers = new Map<number, { at: number; fn: () => void }>();
  #ids = 0;
  constructor(start: number) {
    this.time = start;
  }
  now = () => this.time;
  setTimeout = (fn: () => void, ms: number) => {
    const id = ++this.#ids;
    this.timers.set(id, { at: this.time + ms, fn });
    return id;
  };
  clearTimeout = (id: unknown) => void this.timers.delete(id as number);
  /** The earliest pending timer's time. */
  nextAt(): number | undefined {
    return Math.min(...[...this.timers.values()].map((t) => t.at));
  }
}

const MINUTE = 60_000;
const log = pino({ level: "silent" });

function setup(start: number, data = new SqlitePluginData({ path: ":memory:" })) {
  const clock = new ManualClock(start);
  const runs: number[] = [];
  let fail = false;
  const scheduler = new Scheduler({
    data,
    log,
    clock,
    run: async (_job, slot) => {
      if (fail) throw new Error("store down");
      runs.push(slot);
    },
  });
  scheduler.add({ plugin: "p", name: "tick", schedule: parseSchedule(MINUTE) });
  return { clock, runs, scheduler, data, failNext: (f: boolean) => (fail = f) };
}

describe("Scheduler", () => {
  test("a new schedule does not run for slots before it existed; then once per slot", async () => {
    const { clock, runs, scheduler } = setup(10 * MINUTE + 30_000);
    await scheduler.start();
    expect(runs).toEqual([]);
    expect(clock.nextAt()).toBe(11 * MINUTE);
    clock.time = 11 * MINUTE;
    await scheduler.runDue();
    await scheduler.runDue(); // a second look at the same time runs nothing
    expect(runs).toEqual([11 * MINUTE]);
    expect(clock.nextAt()).toBe(12 * MINUTE);
    scheduler.stop();
    expect(clock.timers.size).toBe(0);
  });

  test("after downtime the missed slots run once, at start", async () => {
    const data = new SqlitePluginData({ path: ":memory:" });
    const first = setup(10 * MINUTE, data);
    await first.scheduler.start();
    first.clock.time = 11 * MINUTE;
    await first.scheduler.runDue();
    first.scheduler.stop();
    expect(first.runs).toEqual([11 * MINUTE]);

    // Down for an hour: a new process on the same data.
    const second = setup(71 * MINUTE + 5_000, data);
    await second.scheduler.start();
    expect(second.runs).toEqual([71 * MINUTE]);
    expect(await data.lastSlot("p", "tick")).toBe(71 * MINUTE);
    second.scheduler.stop();
  });

  test("a run that failed (store down) is not marked done and is tried again", async () => {
    const { clock, runs, scheduler, data, failNext } = setup(10 * MINUTE);
    await scheduler.start();
    clock.time = 11 * MINUTE;
    failNext(true);
    await scheduler.runDue();
    expect(runs).toEqual([]);
    expect(await data.lastSlot("p", "tick")).toBe(10 * MINUTE);
    expect(clock.nextAt()).toBe(11 * MINUTE + 5_000);
    failNext(false);
    clock.time = 11 * MINUTE + 5_000;
    await scheduler.runDue();
    expect(runs).toEqual([11 * MINUTE]);
    scheduler.stop();
  });

  test("two schedulers on one store (two instances): each slot runs once; a live claim of another holder waits, an expired one is taken over", async () => {
    const data = new SqlitePluginData({ path: ":memory:" });
    const a = setup(10 * MINUTE + 30_000, data);
    const b = setup(10 * MINUTE + 30_000, data);
    await a.scheduler.start();
    await b.scheduler.start();
    for (const { clock } of [a, b]) clock.time = 11 * MINUTE;
    await Promise.all([a.scheduler.runDue(), b.scheduler.runDue()]);
    expect([...a.runs, ...b.runs]).toEqual([11 * MINUTE]);

    // A holder that is still running the next slot: neither starts it until its claim expires.
    for (const { clock } of [a, b]) clock.time = 12 * MINUTE;
    expect(await data.claimSlot("p", "tick", 12 * MINUTE, "ghost", 12 * MINUTE, 12 * MINUTE + 10_000)).toBe(
      "ours",
    );
    await Promise.all([a.scheduler.runDue(), b.scheduler.runDue()]);
    expect([...a.runs, ...b.runs]).toEqual([11 * MINUTE]);
    // The holder died: its claim expires, and one of the two runs the slot.
    for (const { clock } of [a, b]) clock.time = 12 * MINUTE + 10_001;
    await Promise.all([a.scheduler.runDue(), b.scheduler.runDue()]);
    expect([...a.runs, ...b.runs]).toEqual([11 * MINUTE, 12 * MINUTE]);
    a.scheduler.stop();
    b.scheduler.stop();
  });
});
