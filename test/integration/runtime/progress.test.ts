// Progress reports of long outbox tasks on a whole Courier against the fake homeserver: the
// replay of a backlog found at start, and draining pending requests on stop.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { ProgressObserver } from "../../../src/outbox/progress.ts";
import { startDashboardStack, type DashboardStack } from "../../support/dashboardStack.ts";

const ROOM = "!progress:fake.test";

/** Records what a Courier reports, per task. */
function recorder() {
  const tasks: Array<{ task: string; total: number; updates: number[]; stopped: boolean }> = [];
  const progress = (task: string): ProgressObserver => {
    const entry = { task, total: -1, updates: [] as number[], stopped: false };
    tasks.push(entry);
    return {
      start: (total) => (entry.total = total),
      update: (done) => entry.updates.push(done),
      stop: () => (entry.stopped = true),
    };
  };
  return { tasks, progress };
}

let dir: string;
const stacks: DashboardStack[] = [];
beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), "courier-progress-"))));
afterEach(async () => {
  for (const stack of stacks.splice(0)) await stack.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("a backlog found at start is reported while it is replayed", async () => {
  const storePath = path.join(dir, "courier.sqlite");
  const first = await startDashboardStack({ adminToken: null, storePath });
  first.hs.pause(); // nothing leaves: 150 requests stay pending
  for (let i = 0; i < 150; i++) await first.say(ROOM, `backlog ${i}`);
  await first.hs.stop(); // resets the request held in flight, so stop() need not wait it out
  await first.stop();

  const { tasks, progress } = recorder();
  const second = await startDashboardStack({ adminToken: null, storePath, progress });
  stacks.push(second);
  await second.hs.waitFor(() => second.hs.roomEvents(ROOM).length >= 150, 30_000);
  await second.courier.outbox.onIdle();
  await waitUntil(() => tasks[0]?.stopped === true);
  expect(tasks).toHaveLength(1);
  expect(tasks[0]).toMatchObject({ task: "replaying backlog", total: 150, stopped: true });
  expect(tasks[0]!.updates.at(-1)).toBe(150);
  // Counts only grow.
  expect(tasks[0]!.updates).toEqual([...tasks[0]!.updates].sort((a, b) => a - b));
}, 90_000);

test("stop with drain lets pending requests leave first, reporting progress", async () => {
  const { tasks, progress } = recorder();
  const stack = await startDashboardStack({ adminToken: null, progress });
  stack.hs.pause();
  for (let i = 0; i < 5; i++) await stack.say(ROOM, `drain ${i}`);
  setTimeout(() => stack.hs.resume(), 300);
  await stack.courier.stop(20_000, { drain: true });
  expect(stack.hs.roomEvents(ROOM).map((e) => e.content.body)).toEqual(
    [0, 1, 2, 3, 4].map((i) => `drain ${i}`),
  );
  expect(tasks).toEqual([
    { task: "draining the outbox", total: 5, updates: expect.any(Array), stopped: true },
  ]);
  expect(tasks[0]!.updates.at(-1)).toBe(5);
  await stack.hs.stop();
}, 60_000);

async function waitUntil(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
