// Security properties of the wired framework (Courier against the in-process fake homeserver):
// plugins cannot act as users outside the registration's namespaces, the hs_token is not taken
// from the query string by default, the database and its WAL files are private, and no token
// reaches the log.
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { loadConfig } from "../../../src/config/loadConfig.ts";
import type { Registration } from "../../../src/config/registration.ts";
import { CourierError, NotOurUserError } from "../../../src/errors.ts";
import { createLogger } from "../../../src/logging/createLogger.ts";
import { definePlugin } from "../../../src/plugins/definePlugin.ts";
import type { Courier } from "../../../src/runtime/Courier.ts";
import { createCourier } from "../../../src/runtime/createCourier.ts";
import { FakeHomeserver } from "../../support/FakeHomeserver.ts";

const SERVER = "hs.test";
const AS_TOKEN = "as_token_security_0123456789abcdef";
const HS_TOKEN = "hs_token_security_0123456789abcdef";
const WEBHOOK_SECRET = "webhook_secret_0123456789abcdef";
const ADMIN_TOKEN = "admin_token_security_0123456789abcdef";

type Outcome = "ok" | unknown;
const outcome = (work: () => Promise<unknown>): Promise<Outcome> =>
  Promise.resolve()
    .then(work)
    .then(
      () => "ok",
      (error: unknown) => error,
    );

describe("Courier security", () => {
  let dir: string;
  let hs: FakeHomeserver;
  let courier: Courier;
  const logLines: string[] = [];
  const results: Record<string, Outcome>[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "courier-security-"));
    hs = await FakeHomeserver.start({
      asToken: AS_TOKEN,
      serverName: SERVER,
      botUserId: `@courier:${SERVER}`,
    });
    const configPath = path.join(dir, "config.yaml");
    writeFileSync(
      configPath,
      [
        "homeserver:",
        `  url: ${hs.url}`,
        `  serverName: ${SERVER}`,
        "appservice:",
        "  bind: { host: 127.0.0.1, port: 0 }",
        "store:",
        "  path: ./data/courier.sqlite",
        "admin:",
        `  token: ${ADMIN_TOKEN}`,
        "plugins:",
        "  - name: sec",
        `    config: { secret: ${WEBHOOK_SECRET} }`,
        // Webhook secrets that are the appservice's tokens: from the plugin config, from the code.
        "  - name: reuseconfig",
        `    config: { secret: ${AS_TOKEN} }`,
        "  - name: reusecode",
        "",
      ].join("\n"),
    );
    const registration: Registration = {
      id: "courier",
      url: "http://127.0.0.1:9",
      asToken: AS_TOKEN,
      hsToken: HS_TOKEN,
      senderLocalpart: "courier",
      namespaces: {
        users: [
          { regex: `@ghost_.*:${SERVER.replace(".", "\\.")}`, exclusive: true },
          { regex: `@shared_.*:${SERVER.replace(".", "\\.")}`, exclusive: false },
        ],
        aliases: [],
        rooms: [],
      },
      rateLimited: false,
      receiveEphemeral: true,
    };
    const plugin = definePlugin({
      name: "sec",
      setup(bot) {
        bot.webhook("POST", "/hook", async () => {});
        bot.command("try", async (ctx) => {
          const stranger = { as: `@notours:${SERVER}` };
          results.push({
            send: await outcome(() => ctx.send(ctx.roomId, { msgtype: "m.text", body: "x" }, stranger)),
            reply: await outcome(() => ctx.reply("x", stranger)),
            react: await outcome(() => ctx.react("👍", stranger)),
            state: await outcome(() =>
              ctx.setState(ctx.roomId, "m.room.topic", "", { topic: "x" }, stranger),
            ),
            toDevice: await outcome(() =>
              ctx.sendToDevice(`@alice:${SERVER}`, "*", "org.example", {}, stranger),
            ),
            toDeviceMany: await outcome(() =>
              ctx.sendToDeviceMany("org.example", { [`@alice:${SERVER}`]: { "*": {} } }, stranger),
            ),
            intent: await outcome(async () => ctx.intent(`@notours:${SERVER}`)),
            // A user of the other server with a matching localpart is not ours either.
            otherServer: await outcome(() =>
              ctx.send(ctx.roomId, { body: "x" }, { as: "@ghost_a:evil.test" }),
            ),
            ghost: await outcome(() => ctx.send(ctx.roomId, { body: "ghost" }, { as: `@ghost_a:${SERVER}` })),
            shared: await outcome(() =>
              ctx.send(ctx.roomId, { body: "shared" }, { as: `@shared_b:${SERVER}` }),
            ),
            bot: await outcome(() => ctx.send(ctx.roomId, { body: "bot" })),
          });
        });
      },
    });
    const reuseconfig = definePlugin({
      name: "reuseconfig",
      setup(bot) {
        bot.webhook("POST", "/alert", async () => {});
      },
    });
    const reusecode = definePlugin({
      name: "reusecode",
      setup(bot) {
        bot.webhook("PUT", "/deploy", async () => {}, { secret: HS_TOKEN });
      },
    });
    courier = createCourier({
      config: loadConfig(configPath, {}),
      registration,
      plugins: { sec: plugin, reuseconfig, reusecode },
      logger: createLogger({
        level: "debug",
        destination: new Writable({
          write(chunk, _encoding, done) {
            logLines.push(...String(chunk).split("\n").filter(Boolean));
            done();
          },
        }),
      }),
    });
    await courier.start();
    hs.setAppservice({ url: `http://127.0.0.1:${courier.port}`, hsToken: HS_TOKEN });
  }, 30_000);

  afterAll(async () => {
    await courier?.stop(2000);
    await hs?.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  test("a plugin cannot send or act as a user outside the namespaces: refused at enqueue, M_EXCLUSIVE", async () => {
    const room = `!room:${SERVER}`;
    const pushed = await hs.pushTransaction("1", {
      events: [
        {
          event_id: "$try",
          room_id: room,
          sender: `@alice:${SERVER}`,
          type: "m.room.message",
          origin_server_ts: 1,
          content: { msgtype: "m.text", body: "!try" },
        },
      ],
    });
    expect(pushed.status).toBe(200);
    await courier.dispatcher.onIdle();
    await courier.outbox.onIdle();
    expect(results).toHaveLength(1);
    const [result] = results as [Record<string, Outcome>];
    for (const refused of [
      "send",
      "reply",
      "react",
      "state",
      "toDevice",
      "toDeviceMany",
      "intent",
      "otherServer",
    ]) {
      expect({ refused, error: result[refused] }).toEqual({ refused, error: expect.any(NotOurUserError) });
      expect(result[refused]).toBeInstanceOf(CourierError);
      expect(result[refused]).toMatchObject({ errcode: "M_EXCLUSIVE", status: 403 });
    }
    expect({ ghost: result.ghost, shared: result.shared, bot: result.bot }).toEqual({
      ghost: "ok",
      shared: "ok",
      bot: "ok",
    });
    // Nothing was journaled for the refused ones, nothing reached the homeserver, no dead letter.
    expect(hs.roomEvents(room).map((e) => [e.sender, e.content.body])).toEqual([
      [`@ghost_a:${SERVER}`, "ghost"],
      [`@shared_b:${SERVER}`, "shared"],
      [`@courier:${SERVER}`, "bot"],
    ]);
    expect(hs.requests.filter((r) => /notours|evil\.test/.test(decodeURIComponent(r.url)))).toEqual([]);
    expect((await courier.outbox.stats()).totals).toEqual({ pending: 0, sent: 3, dead: 0 });
  });

  test("the hs_token in the query string alone is refused by default (appservice.allowQueryToken)", async () => {
    expect(courier.config.appservice.allowQueryToken).toBe(false);
    const res = await fetch(
      `http://127.0.0.1:${courier.port}/_matrix/app/v1/transactions/q1?access_token=${HS_TOKEN}`,
      { method: "PUT", body: JSON.stringify({ events: [] }) },
    );
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ errcode: "M_MISSING_TOKEN" });
  });

  test("the database, its txn key index, their -wal and -shm files and the writer lock are readable by their owner only", () => {
    const db = courier.config.store.path;
    const files = [db, `${db}-txnkeys`].flatMap((file) => [file, `${file}-wal`, `${file}-shm`]);
    files.push(`${db}-lock`);
    for (const file of files) {
      expect({ file: path.basename(file), mode: (statSync(file).mode & 0o777).toString(8) }).toEqual({
        file: path.basename(file),
        mode: "600",
      });
    }
    expect(statSync(path.dirname(db)).mode & 0o077).toBe(0);
  });

  test("a webhook whose secret is the hs_token or the as_token fails its plugin's load, naming the route", async () => {
    const status = courier.host.status();
    expect(status).toEqual([
      { name: "sec", status: "running" },
      {
        name: "reuseconfig",
        status: "failed",
        error: `plugin "reuseconfig": webhook POST /plugins/reuseconfig/alert: its secret is the registration's hs_token or as_token; give the webhook a secret of its own`,
      },
      {
        name: "reusecode",
        status: "failed",
        error: `plugin "reusecode": webhook PUT /plugins/reusecode/deploy: its secret is the registration's hs_token or as_token; give the webhook a secret of its own`,
      },
    ]);
    // Not mounted: the token opens nothing.
    const hook = await fetch(`http://127.0.0.1:${courier.port}/plugins/reusecode/deploy`, {
      method: "PUT",
      headers: { authorization: `Bearer ${HS_TOKEN}` },
      body: "{}",
    });
    expect(hook.status).not.toBe(200);
  });

  test("/ready (no auth) says ready or not per component, never an error text; the details are on the admin API", async () => {
    const ready = await fetch(`http://127.0.0.1:${courier.port}/ready`);
    const text = await ready.text();
    expect(JSON.parse(text)).toEqual({
      ready: true,
      checks: {
        ping: expect.stringMatching(/^(ok|failed)$/),
        plugins: { sec: "running", reuseconfig: "failed", reusecode: "failed" },
      },
    });
    expect(text).not.toContain("hs_token");
    expect(text).not.toContain("webhook");
    expect(text).not.toContain("diagnosis");
    const state = await fetch(`http://127.0.0.1:${courier.port}/admin/api/state`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(state.status).toBe(200);
    const body = (await state.json()) as { plugins: Array<{ name: string; error?: string }> };
    expect(body.plugins.find((p) => p.name === "reusecode")?.error).toContain(
      "webhook PUT /plugins/reusecode/deploy",
    );
    expect((await fetch(`http://127.0.0.1:${courier.port}/admin/api/state`)).status).toBe(401);
  });

  test("no token or secret reached the log", async () => {
    // A webhook refused, with the secret in the query string: must not be logged either.
    const hook = await fetch(`http://127.0.0.1:${courier.port}/plugins/sec/hook?secret=${WEBHOOK_SECRET}`, {
      method: "POST",
      headers: { authorization: `Bearer ${AS_TOKEN}` },
      body: "{}",
    });
    expect(hook.status).toBe(403);
    expect(logLines.length).toBeGreaterThan(5);
    const log = logLines.join("\n");
    for (const secret of [AS_TOKEN, HS_TOKEN, WEBHOOK_SECRET, ADMIN_TOKEN]) expect(log).not.toContain(secret);
  });
});
