// One writer per store: while the service runs it holds the store's writer lock, and
// `courier outbox drop/retry` go through its admin API; while it is down, the CLI takes the lock
// for its command, and a service cannot start meanwhile.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { configSchema } from "../../../src/config/schema.ts";
import { openSqliteStores } from "../../../src/runtime/createCourier.ts";
import { StoreLockedError, WriterLock } from "../../../src/store/sqlite/WriterLock.ts";
import { startDashboardStack, type DashboardStack } from "../../support/dashboardStack.ts";

const CLI = fileURLToPath(new URL("../../../src/cli/main.ts", import.meta.url));
const ROOM = "!held:fake.test";

let dir: string;
const stacks: DashboardStack[] = [];
beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), "courier-onewriter-"))));
afterEach(async () => {
  for (const stack of stacks.splice(0)) await stack.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `courier outbox …` with a config for this store (and the service's port and token, if given). */
async function courier(
  args: string[],
  storePath: string,
  service?: { stack: DashboardStack; token?: string },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const config = path.join(dir, "config.yaml");
  const bind = service
    ? `appservice:\n  bind: { host: 127.0.0.1, port: ${new URL(service.stack.url).port} }\n`
    : "";
  const admin = service?.token ? `admin:\n  token: ${service.token}\n` : "";
  writeFileSync(
    config,
    `homeserver:\n  url: http://127.0.0.1:1\n  serverName: fake.test\n${bind}store:\n  path: ${storePath}\n${admin}`,
  );
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [
      CLI,
      "outbox",
      ...args,
      "--config",
      config,
    ]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const storeConfig = (storePath: string) =>
  configSchema.parse({
    homeserver: { url: "http://127.0.0.1:1", serverName: "fake.test" },
    store: { path: storePath },
  }).store;

test("courier outbox drop while the service runs goes through its admin API: the dropped request is never sent", async () => {
  const storePath = path.join(dir, "courier.sqlite");
  const stack = await startDashboardStack({ storePath });
  stacks.push(stack);
  const { hs } = stack;
  hs.pause();
  const sent = [];
  for (let i = 0; i < 3; i++) sent.push(await stack.say(ROOM, `m${i}`));
  await hs.waitFor(() => hs.pausedRequests === 1, 10_000, "m0 on the wire"); // m1 and m2 held by the service

  const dropped = await courier(["drop", sent[1]!.txnId, "--yes"], storePath, {
    stack,
    token: stack.adminToken!,
  });
  expect(dropped).toMatchObject({ code: 0, stdout: expect.stringContaining("1 request dropped") });
  expect(stack.logs()).toContain("requests dropped by an operator"); // by the service, not in the file behind its back
  await expect(sent[1]!.delivered()).rejects.toMatchObject({ errcode: "COURIER_DROPPED" });

  hs.resume();
  await stack.courier.outbox.onIdle(); // nothing left to send: a late m1 would be in the room by now
  expect(hs.roomEvents(ROOM).map((e) => e.content.body)).toEqual(["m0", "m2"]);
  expect((await courier(["ls", "--state", "dropped"], storePath)).stdout).toContain(
    `${sent[1]!.txnId}\tdropped`,
  );
}, 60_000);

test("while the service holds the store, a CLI change without its admin token is refused and changes nothing", async () => {
  const storePath = path.join(dir, "courier.sqlite");
  const stack = await startDashboardStack({ storePath });
  stacks.push(stack);
  stack.hs.pause();
  const held = await stack.say(ROOM, "held");
  const refused = await courier(["drop", held.txnId, "--yes"], storePath, { stack });
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(
    /service is running on this store.*sets no admin\.token.*or stop the service/s,
  );
  expect(await stack.courier.outbox.stats()).toMatchObject({ totals: { pending: 1 } });
  stack.hs.resume();
  await expect(held.delivered()).resolves.toBeDefined();
}, 60_000);

test("while the service is down the CLI writes the store under its lock; a service cannot start while the lock is held", async () => {
  const storePath = path.join(dir, "courier.sqlite");
  const stack = await startDashboardStack({ storePath });
  const BANNED = "!banned:fake.test";
  stack.hs.refuseRoom(BANNED);
  const dead = await Promise.all([0, 1].map((i) => stack.say(BANNED, `refused ${i}`)));
  for (const d of dead) await expect(d.delivered()).rejects.toMatchObject({ errcode: "M_FORBIDDEN" });
  await stack.stop();

  // Service down: the CLI takes the lock itself, changes the file, and lets it go.
  expect((await courier(["drop", dead[0]!.txnId, "--yes"], storePath)).stdout).toContain("1 request dropped");
  expect((await courier(["retry", "--all-dead"], storePath)).stdout).toContain(
    "1 request put back to pending",
  );

  // A `courier outbox` command holding the lock (as outboxCommands takes it): no service starts.
  const lock = WriterLock.take(storePath);
  // (A starting service waits 2 s for the command to finish, then refuses.)
  const refusal = (() => {
    try {
      openSqliteStores(storeConfig(storePath));
    } catch (error) {
      return error;
    }
  })();
  expect(refusal).toBeInstanceOf(StoreLockedError);
  expect((refusal as Error).message).toMatch(
    /Another process writes this store .*courier outbox drop\/retry/,
  );
  // And another CLI command takes the held lock for a running service, which it cannot reach without a token.
  const second = await courier(["retry", "--all-dead"], storePath);
  expect(second.code).toBe(1);
  expect(second.stderr).toContain("admin.token");
  lock.release();

  const stores = openSqliteStores(storeConfig(storePath));
  expect(await stores.outbox.totals()).toMatchObject({ pending: 1, dead: 0 });
  expect(await stores.outbox.get(dead[0]!.txnId)).toMatchObject({ state: "dropped" });
  expect(await stores.outbox.get(dead[1]!.txnId)).toMatchObject({ state: "pending" });
  await stores.close();
}, 60_000);

test("a starting service waits briefly for a courier outbox command that holds the lock, then starts", async () => {
  const storePath = path.join(dir, "courier.sqlite");
  // Another process takes the lock as a CLI command does, and lets it go 300 ms later.
  const lockModule = fileURLToPath(new URL("../../../src/store/sqlite/WriterLock.ts", import.meta.url));
  const child = spawn(process.execPath, [
    "--input-type=module",
    "-e",
    `import { WriterLock } from ${JSON.stringify(lockModule)};
     const lock = WriterLock.take(process.argv[1]);
     process.stdout.write("locked\\n");
     setTimeout(() => lock.release(), 300);`,
    storePath,
  ]);
  const exited = new Promise((resolve) => child.once("exit", resolve));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (chunk: Buffer) => chunk.toString().includes("locked") && resolve());
    child.once("exit", (code) => reject(new Error(`the lock holder exited early (${code})`)));
  });
  expect(WriterLock.tryTake(storePath)).toBeUndefined(); // held by the other process
  const stores = openSqliteStores(storeConfig(storePath)); // waits for it, up to 2 s
  expect(await stores.outbox.totals()).toMatchObject({ pending: 0 });
  await stores.close();
  await exited;
}, 30_000);
