// Progress reports of long outbox tasks on a whole Courier against the fake homeserver: the
// replay of a backlog found at start, and draining pending requests on stop.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
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

test("courier outbox retry --all-dead --wait goes through the running service's admin API and follows its resends, with progress lines", async () => {
  const storePath = path.join(dir, "courier.sqlite");
  const stack = await startDashboardStack({ storePath });
  stacks.push(stack);
  const BANNED = "!banned:fake.test";
  stack.hs.refuseRoom(BANNED);
  const sent = await Promise.all([0, 1, 2].map((i) => stack.say(BANNED, `refused ${i}`)));
  for (const s of sent) await expect(s.delivered()).rejects.toThrow();
  stack.hs.allowRoom(BANNED);
  const config = path.join(dir, "config.yaml");
  const port = new URL(stack.url).port;
  const base = `homeserver:\n  url: ${stack.hs.url}\n  serverName: fake.test\nappservice:\n  bind: { host: 127.0.0.1, port: ${port} }\nstore:\n  path: ${storePath}\n`;
  const cli = fileURLToPath(new URL("../../../src/cli/main.ts", import.meta.url));
  const retry = () =>
    promisify(execFile)(process.execPath, [
      cli,
      "outbox",
      "retry",
      "--all-dead",
      "--wait",
      "40",
      "--config",
      config,
    ]);
  // The service holds the store: without the admin token the CLI cannot go through it, and says how to fix it.
  writeFileSync(config, base);
  const refused = await retry().then(
    () => undefined,
    (error: { code: number; stderr: string }) => error,
  );
  expect(refused?.code).toBe(1);
  expect(refused?.stderr).toMatch(/service is running on this store.*admin\.token.*or stop the service/s);
  expect((await stack.courier.outbox.stats()).totals).toMatchObject({ dead: 3 }); // nothing changed

  writeFileSync(config, `${base}admin:\n  token: ${stack.adminToken}\n`);
  const { stdout, stderr } = await retry();
  expect(stdout).toContain("3 requests put back to pending");
  expect(stdout).toContain("all of them settled");
  // Not a terminal: progress as JSON log lines with counts.
  const lines = stderr
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines[0]).toMatchObject({ task: "bulk retry", total: 3 });
  expect(lines.at(-1)).toMatchObject({ task: "bulk retry", msg: "bulk retry: finished" });
  expect(stack.hs.roomEvents(BANNED)).toHaveLength(3);
  expect(stack.logs()).toContain("every dead letter requeued by an operator");
}, 90_000);

async function waitUntil(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
