// `courier doctor` against the fake homeserver: a healthy deployment with the service stopped
// (doctor answers the homeserver's ping itself) and running (the service answers), and what a
// wrong token, a private-but-not-0600 store and a missing namespace look like.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { loadConfig } from "../../../src/config/loadConfig.ts";
import { writeRegistration } from "../../../src/config/registration.ts";
import { doctorExitCode, ghostLocalpart, runDoctor } from "../../../src/ops/doctor/runDoctor.ts";
import { openSqlite } from "../../../src/store/sqlite/SqliteDatabase.ts";
import { FakeHomeserver } from "../../support/FakeHomeserver.ts";
import { findFreePort, startDashboardStack } from "../../support/dashboardStack.ts";

let dir: string;
const cleanups: Array<() => Promise<void>> = [];
beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), "courier-doctor-"))));
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const token = () => `tok_${randomBytes(16).toString("hex")}`;

/** Writes config.yaml + registration.yaml; returns the config path. */
function deployment(options: {
  hsUrl: string;
  port: number;
  asToken: string;
  hsToken: string;
  namespace?: boolean;
}): string {
  const ns =
    options.namespace === false
      ? ""
      : "\n  namespaces:\n    users: [{ regex: '@bot_.*:fake\\.test', exclusive: true }]";
  const file = path.join(dir, "config.yaml");
  writeFileSync(
    file,
    `homeserver:\n  url: ${options.hsUrl}\n  serverName: fake.test\n` +
      `appservice:\n  bind: { host: 127.0.0.1, port: ${options.port} }\n  senderLocalpart: bot\n` +
      `  asToken: ${options.asToken}\n  hsToken: ${options.hsToken}${ns}\n` +
      `store:\n  path: ./data/courier.sqlite\n`,
  );
  const config = loadConfig(file, {});
  writeRegistration(config.appservice.registration, config);
  return file;
}

const byName = (results: Awaited<ReturnType<typeof runDoctor>>) =>
  Object.fromEntries(results.map((r) => [r.name, r.status]));

test("service stopped: every check passes, doctor answers the ping itself, registers a test ghost", async () => {
  const [asToken, hsToken, port] = [token(), token(), await findFreePort()];
  const hs = await FakeHomeserver.start({
    asToken,
    serverName: "fake.test",
    userNamespace: /^@bot_.*:fake\.test$/,
    appservice: { url: `http://127.0.0.1:${port}`, hsToken, id: "courier" },
  });
  cleanups.push(() => hs.stop());
  const config = deployment({ hsUrl: hs.url, port, asToken, hsToken });
  const results = await runDoctor(config, { env: {} });
  expect(byName(results)).toEqual({
    config: "pass",
    registration: "pass",
    homeserver: "pass",
    clock: "pass",
    as_token: "pass",
    ping: "pass",
    "ghost registration": "pass",
    encryption: "skip",
    store: "pass",
  });
  expect(results.find((r) => r.name === "ping")!.detail).toContain("service is not running");
  expect(hs.registeredUsers()).toContain("@bot_courier_doctor:fake.test");
  expect(doctorExitCode(results)).toBe(0);
  expect(JSON.stringify(results)).not.toContain(asToken);
  expect(JSON.stringify(results)).not.toContain(hsToken);

  // A store file readable by others is a warning; a second run finds the ghost already there.
  const db = openSqlite({ path: path.join(dir, "data", "courier.sqlite") });
  db.close();
  chmodSync(path.join(dir, "data", "courier.sqlite"), 0o644);
  const again = await runDoctor(config, { env: {} });
  expect(again.find((r) => r.name === "store")).toMatchObject({ status: "warn" });
  expect(again.find((r) => r.name === "ghost registration")!.detail).toContain("already registered");
  expect(doctorExitCode(again)).toBe(0);
}, 60_000);

test("service running: the homeserver pings the service itself", async () => {
  const stack = await startDashboardStack({ adminToken: null });
  cleanups.push(() => stack.stop());
  const config = deployment({
    hsUrl: stack.hs.url,
    port: stack.courier.port,
    asToken: stack.asToken,
    hsToken: stack.hsToken,
  });
  const results = await runDoctor(config, { env: {} });
  expect(results.find((r) => r.name === "ping")).toMatchObject({
    status: "pass",
    detail: expect.stringContaining("the running service answered"),
  });
  expect(doctorExitCode(results)).toBe(0);
}, 60_000);

test("a token the homeserver does not know fails (exit 1) and skips what needs it; no namespace is skipped", async () => {
  const [asToken, hsToken, port] = [token(), token(), await findFreePort()];
  const hs = await FakeHomeserver.start({
    asToken: token(), // not ours
    serverName: "fake.test",
    appservice: { url: `http://127.0.0.1:${port}`, hsToken, id: "courier" },
  });
  cleanups.push(() => hs.stop());
  const config = deployment({ hsUrl: hs.url, port, asToken, hsToken, namespace: false });
  const results = await runDoctor(config, { env: {} });
  expect(byName(results)).toMatchObject({ homeserver: "pass", as_token: "fail", ping: "skip" });
  expect(results.find((r) => r.name === "as_token")!.detail).toContain("app_service_config_files");
  expect(doctorExitCode(results)).toBe(1);
  expect(JSON.stringify(results)).not.toContain(asToken);

  const good = await FakeHomeserver.start({
    asToken,
    serverName: "fake.test",
    appservice: { url: `http://127.0.0.1:${port}`, hsToken, id: "courier" },
  });
  cleanups.push(() => good.stop());
  const fixed = deployment({ hsUrl: good.url, port, asToken, hsToken, namespace: false });
  const noNamespace = await runDoctor(fixed, { env: {} });
  expect(noNamespace.find((r) => r.name === "ghost registration")).toEqual({
    name: "ghost registration",
    status: "skip",
    detail: "skipped: no user namespace",
  });
}, 60_000);

test("an unreachable homeserver and a bad config fail", async () => {
  const [asToken, hsToken, port, dead] = [token(), token(), await findFreePort(), await findFreePort()];
  const config = deployment({ hsUrl: `http://127.0.0.1:${dead}`, port, asToken, hsToken });
  const results = await runDoctor(config, { env: {}, timeoutMs: 3000 });
  expect(byName(results)).toMatchObject({ homeserver: "fail", as_token: "skip", store: "pass" });
  writeFileSync(config, "homeserver:\n  url: nope\n");
  const bad = await runDoctor(config, { env: {} });
  expect(bad[0]).toMatchObject({ name: "config", status: "fail" });
  expect(doctorExitCode(bad)).toBe(1);
}, 60_000);

test("the test ghost is derived from the namespace's literal prefix", () => {
  expect(ghostLocalpart("@bot_.*:fake\\.test", "fake.test")).toBe("bot_courier_doctor");
  expect(ghostLocalpart("@irc_.+:example\\.org", "example.org")).toBe("irc_courier_doctor");
  expect(ghostLocalpart("@[0-9]+:x", "x")).toBeUndefined();
});
