// Webhook routes run their handler only for a request that proves it holds the route's secret:
// the bearer token, or GitHub's HMAC signature of the exact body. Everything else is a 401/403
// Matrix error, the handler never runs, nothing is sent; one plugin's secret opens no other
// plugin's routes. (The happy paths and the basic refusals are in ../plugins/.)
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import fc from "fast-check";
import { pino } from "pino";
import { request } from "undici";
import { z } from "zod";
import {
  createAppserviceApp,
  listen,
  type ListeningAppservice,
} from "../../../src/inbound/AppserviceServer.ts";
import { userId } from "../../../src/ids.ts";
import type { MatrixRequest } from "../../../src/matrix/requests.ts";
import { Outbox } from "../../../src/outbox/Outbox.ts";
import { definePlugin } from "../../../src/plugins/definePlugin.ts";
import { PluginHost } from "../../../src/plugins/PluginHost.ts";
import { hubSignature } from "../../../src/plugins/webhookAuth.ts";
import { SqliteInboundJournal } from "../../../src/store/sqlite/SqliteInboundJournal.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import { SqlitePluginData } from "../../../src/store/sqlite/SqlitePluginData.ts";
import { fuzzParameters } from "../../fuzz/support/fuzzParameters.ts";

const BOT = "@bot:hs.test";
const ROOM = "!hooks:hs.test";
const BEARER_SECRET = "bearer-secret-0123456789abcdef";
const HMAC_SECRET = "hmac-secret-0123456789abcdef";
const OTHER_SECRET = "other-plugin-secret-0123456789";
const BODY = '{"ref":"refs/heads/main","zen":"Keep it logically awesome."}';

let listening: ListeningAppservice;
let outbox: Outbox;
let host: PluginHost;
let base: string;
const sent: MatrixRequest[] = [];
const ran: string[] = [];

beforeAll(async () => {
  outbox = new Outbox({
    store: new SqliteOutboxStore({ path: ":memory:" }),
    transport: { send: async (req) => (sent.push(req), { event_id: `$${sent.length}` }) },
    appserviceId: "hooks",
    botUserId: userId(BOT),
  });
  host = new PluginHost({
    outbox,
    data: new SqlitePluginData({ path: ":memory:" }),
    logger: pino({ level: "silent" }),
    botUserId: BOT,
    isOwnUser: (id) => id === BOT,
    intent: () => {
      throw new Error("not used");
    },
  });
  const hooks = definePlugin({
    name: "hooks",
    setup(bot) {
      const handler =
        (route: string) => async (ctx: { send: (room: string, c: object) => Promise<unknown> }) => {
          ran.push(route);
          await ctx.send(ROOM, { msgtype: "m.notice", body: route });
        };
      bot.webhook("POST", "/bearer", handler("bearer"), { secret: BEARER_SECRET });
      bot.webhook("POST", "/github", handler("github"), { secret: HMAC_SECRET, scheme: "hmac-sha256" });
    },
  });
  const other = definePlugin({
    name: "other",
    setup(bot) {
      bot.webhook("POST", "/x", async () => void ran.push("other"), { secret: OTHER_SECRET });
    },
  });
  expect(await host.load(hooks, {})).toBe(true);
  expect(await host.load(other, {})).toBe(true);
  const app = createAppserviceApp({
    hsToken: "hs_token_webhook_security_0123456789",
    journal: new SqliteInboundJournal({ path: ":memory:" }),
    logger: pino({ level: "silent" }),
    routes: (a) => host.mountWebhooks(a),
  });
  await host.start();
  await outbox.start();
  listening = await listen(app, { port: 0 });
  base = `http://127.0.0.1:${listening.port}`;
});

afterAll(async () => {
  await host.stop();
  await outbox.stop(1000);
  await listening.close(1000);
});

async function post(path: string, headers: Record<string, string | string[]>, body: string | Buffer = BODY) {
  const res = await request(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: JSON.parse(text) as Record<string, unknown> };
}

const sign = (body: string | Buffer, secret = HMAC_SECRET) => hubSignature(body, secret);
type Send = (room: string, content: object) => Promise<unknown>;

describe("refused, the handler never runs, nothing is sent", () => {
  const bearerCases: Array<[string, number, string, Record<string, string | string[]>, string]> = [
    ["no Authorization", 401, "M_UNAUTHORIZED", {}, ""],
    ["an empty Authorization", 401, "M_UNAUTHORIZED", { authorization: "" }, ""],
    [
      "the secret in the query string",
      401,
      "M_UNAUTHORIZED",
      {},
      `?secret=${BEARER_SECRET}&access_token=${BEARER_SECRET}`,
    ],
    ["a wrong token", 403, "M_FORBIDDEN", { authorization: "Bearer nope" }, ""],
    ["the secret without a scheme", 403, "M_FORBIDDEN", { authorization: BEARER_SECRET }, ""],
    [
      "the Basic scheme",
      403,
      "M_FORBIDDEN",
      { authorization: `Basic ${Buffer.from(`x:${BEARER_SECRET}`).toString("base64")}` },
      "",
    ],
    ["the Token scheme", 403, "M_FORBIDDEN", { authorization: `Token ${BEARER_SECRET}` }, ""],
    ["the secret plus one character", 403, "M_FORBIDDEN", { authorization: `Bearer ${BEARER_SECRET}x` }, ""],
    [
      "the secret less one character",
      403,
      "M_FORBIDDEN",
      { authorization: `Bearer ${BEARER_SECRET.slice(0, -1)}` },
      "",
    ],
    [
      "the secret in upper case",
      403,
      "M_FORBIDDEN",
      { authorization: `Bearer ${BEARER_SECRET.toUpperCase()}` },
      "",
    ],
    ["another plugin's secret", 403, "M_FORBIDDEN", { authorization: `Bearer ${OTHER_SECRET}` }, ""],
    ["the HMAC route's secret", 403, "M_FORBIDDEN", { authorization: `Bearer ${HMAC_SECRET}` }, ""],
    [
      "a GitHub signature instead",
      401,
      "M_UNAUTHORIZED",
      { "x-hub-signature-256": sign(BODY, BEARER_SECRET) },
      "",
    ],
  ];
  test.each(bearerCases)("bearer route: %s → %d %s", async (_name, status, errcode, headers, query) => {
    const before = { ran: ran.length, sent: sent.length };
    const reply = await post(`/plugins/hooks/bearer${query}`, headers);
    expect(reply).toEqual({ status, json: { errcode, error: expect.any(String) } });
    await outbox.onIdle();
    expect({ ran: ran.length, sent: sent.length }).toEqual(before);
  });

  const tampered = BODY.replace("awesome", "AWESOME");
  const hmacCases: Array<[string, number, string, Record<string, string | string[]>, string]> = [
    ["no signature", 401, "M_UNAUTHORIZED", {}, BODY],
    [
      "only the SHA-1 X-Hub-Signature",
      401,
      "M_UNAUTHORIZED",
      { "x-hub-signature": `sha1=${createHmac("sha1", HMAC_SECRET).update(BODY).digest("hex")}` },
      BODY,
    ],
    ["the bearer secret", 401, "M_UNAUTHORIZED", { authorization: `Bearer ${HMAC_SECRET}` }, BODY],
    [
      "a signature with another secret",
      403,
      "M_FORBIDDEN",
      { "x-hub-signature-256": sign(BODY, OTHER_SECRET) },
      BODY,
    ],
    [
      "a body changed after signing (same length)",
      403,
      "M_FORBIDDEN",
      { "x-hub-signature-256": sign(BODY) },
      tampered,
    ],
    ["a body with a byte appended", 403, "M_FORBIDDEN", { "x-hub-signature-256": sign(BODY) }, `${BODY}\n`],
    ["the signature of an empty body", 403, "M_FORBIDDEN", { "x-hub-signature-256": sign("") }, BODY],
    ["a truncated signature", 403, "M_FORBIDDEN", { "x-hub-signature-256": sign(BODY).slice(0, -2) }, BODY],
    [
      "the hex digest without 'sha256='",
      403,
      "M_FORBIDDEN",
      { "x-hub-signature-256": sign(BODY).slice(7) },
      BODY,
    ],
    [
      "the right signature twice",
      403,
      "M_FORBIDDEN",
      { "x-hub-signature-256": [sign(BODY), sign(BODY)] },
      BODY,
    ],
    [
      "the secret itself as signature",
      403,
      "M_FORBIDDEN",
      { "x-hub-signature-256": `sha256=${HMAC_SECRET}` },
      BODY,
    ],
  ];
  test.each(hmacCases)("HMAC route: %s → %d %s", async (_name, status, errcode, headers, body) => {
    const before = { ran: ran.length, sent: sent.length };
    const reply = await post("/plugins/hooks/github", headers, body);
    expect(reply).toEqual({ status, json: { errcode, error: expect.any(String) } });
    await outbox.onIdle();
    expect({ ran: ran.length, sent: sent.length }).toEqual(before);
  });

  test("a bearer route refuses a stranger before reading the body: 403, not 413, for 2 MiB", async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 0x20);
    expect(await post("/plugins/hooks/bearer", { authorization: "Bearer nope" }, big)).toEqual({
      status: 403,
      json: { errcode: "M_FORBIDDEN", error: expect.any(String) },
    });
    expect(
      (await post("/plugins/hooks/bearer", { authorization: `Bearer ${BEARER_SECRET}` }, big)).status,
    ).toBe(413);
  });

  test("a plugin's secret opens its own routes only", async () => {
    expect((await post("/plugins/other/x", { authorization: `Bearer ${BEARER_SECRET}` })).status).toBe(403);
    expect((await post("/plugins/other/x", { authorization: `Bearer ${OTHER_SECRET}` })).status).toBe(202);
    expect(ran.at(-1)).toBe("other");
  });
});

test("accepted: the right bearer token (any case of the scheme) and the right signature (any case of the hex)", async () => {
  const before = sent.length;
  expect((await post("/plugins/hooks/bearer", { authorization: `bearer ${BEARER_SECRET}` })).status).toBe(
    202,
  );
  expect(
    (
      await post("/plugins/hooks/github", {
        "x-hub-signature-256": sign(BODY).toUpperCase().replace("SHA256", "sha256"),
      })
    ).status,
  ).toBe(202);
  await outbox.onIdle();
  expect(sent.length - before).toBe(2);
});

test("random Authorization and signature headers never run a handler (fuzzed)", async () => {
  const header = fc.oneof(
    fc.string({ unit: "grapheme-ascii", maxLength: 80 }),
    fc.string({ unit: "grapheme-ascii", maxLength: 40 }).map((s) => `Bearer ${s}`),
    fc
      .string({ unit: "grapheme-ascii", maxLength: 40 })
      .map((s) => `Bearer ${BEARER_SECRET.slice(0, 10)}${s}`),
  );
  const signature = fc.oneof(
    fc.string({ unit: "grapheme-ascii", maxLength: 80 }),
    fc.stringMatching(/^sha256=[0-9a-f]{64}$/),
    fc.nat({ max: 63 }).map((i) => {
      const good = sign(BODY);
      const flipped = good[7 + i] === "0" ? "1" : "0";
      return good.slice(0, 7 + i) + flipped + good.slice(8 + i);
    }),
  );
  await fc.assert(
    fc.asyncProperty(header, signature, async (auth, sig) => {
      fc.pre(auth.trim() !== `Bearer ${BEARER_SECRET}`);
      const before = ran.length;
      const bearer = await post("/plugins/hooks/bearer", { authorization: auth });
      const hmac = await post("/plugins/hooks/github", { "x-hub-signature-256": sig, authorization: auth });
      expect([bearer.status, hmac.status].every((s) => s === 401 || s === 403)).toBe(true);
      expect(ran.length).toBe(before);
    }),
    fuzzParameters("webhook credentials", { numRuns: 60, timeLimitMs: 10_000 }),
  );
});

// GitHub's signature covers the body only; X-GitHub-Delivery is not signed. An HMAC route so
// keeps a SHA-256 of each signed body it ran (in the plugin store, for `replayWindowMs`, a day by
// default): the same body again inside the window is answered as a delivery it already has
// (202, the first delivery's id) and its handler does not run again, whatever delivery id it
// carries. Each host here is a restartable stack over one store file and a clock we drive.
describe("a captured signed body replayed with another delivery id runs nothing", () => {
  const DAY = 24 * 60 * 60 * 1000;
  const REPLAYED = '{"action":"opened","issue":{"number":7,"title":"replay me"}}';

  interface Stack {
    readonly ran: string[];
    readonly data: SqlitePluginData;
    post(headers: Record<string, string>, body?: string, path?: string): ReturnType<typeof post>;
    stop(): Promise<void>;
  }

  /** A plugin host serving "gh" (an HMAC route, an optional window from its config) over `dataPath`. */
  async function stack(dataPath: string, now: () => number, config: object = {}): Promise<Stack> {
    const ranHere: string[] = [];
    const box = new Outbox({
      store: new SqliteOutboxStore({ path: ":memory:" }),
      transport: { send: async () => ({ event_id: "$x" }) },
      appserviceId: "replay",
      botUserId: userId(BOT),
    });
    const data = new SqlitePluginData({ path: dataPath });
    const replayHost = new PluginHost({
      outbox: box,
      data,
      logger: pino({ level: "silent" }),
      botUserId: BOT,
      isOwnUser: (id) => id === BOT,
      intent: () => {
        throw new Error("not used");
      },
      clock: {
        now,
        setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
        clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
      },
    });
    const gh = definePlugin({
      name: "gh",
      config: z.object({ replayWindowMs: z.number().optional() }),
      setup(bot) {
        const handler = (route: string) => async (ctx: { deliveryId: string; send: Send }) => {
          ranHere.push(`${route} ${ctx.deliveryId}`);
          await ctx.send(ROOM, { msgtype: "m.notice", body: route });
        };
        bot.webhook("POST", "/github", handler("github"), { secret: HMAC_SECRET, scheme: "hmac-sha256" });
        bot.webhook("POST", "/other", handler("other"), {
          secret: HMAC_SECRET,
          scheme: "hmac-sha256",
          replayWindowMs: 60 * 60 * 1000,
        });
        bot.webhook("POST", "/bearer", handler("bearer"), { secret: BEARER_SECRET });
        bot.webhook(
          "POST",
          "/flaky",
          async (ctx) => {
            ranHere.push(`flaky ${ctx.deliveryId}`);
            if (ranHere.length === 1) throw new Error("the first try fails");
          },
          { secret: HMAC_SECRET, scheme: "hmac-sha256" },
        );
      },
    });
    expect(await replayHost.load(gh, config)).toBe(true);
    const app = createAppserviceApp({
      hsToken: "hs_token_webhook_replay_0123456789",
      journal: new SqliteInboundJournal({ path: ":memory:" }),
      logger: pino({ level: "silent" }),
      routes: (a) => replayHost.mountWebhooks(a),
    });
    await replayHost.start();
    await box.start();
    const served = await listen(app, { port: 0 });
    const url = `http://127.0.0.1:${served.port}`;
    return {
      ran: ranHere,
      data,
      async post(headers, body = REPLAYED, path = "/github") {
        const res = await request(`${url}/plugins/gh${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body,
        });
        return { status: res.statusCode, json: JSON.parse(await res.body.text()) as Record<string, unknown> };
      },
      async stop() {
        await replayHost.stop();
        await box.stop(1000);
        await served.close(1000);
        data.close();
      },
    };
  }

  let folder: string;
  let time = Date.UTC(2026, 11, 4, 12);
  const now = () => time;
  const running: Stack[] = [];
  const open = async (config?: object) => {
    const s = await stack(join(folder, "courier.db"), now, config);
    running.push(s);
    return s;
  };
  beforeEach(() => {
    folder = mkdtempSync(join(tmpdir(), "courier-replay-"));
    time = Date.UTC(2026, 11, 4, 12);
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((s) => s.stop()));
    rmSync(folder, { recursive: true, force: true });
  });
  const signed = (delivery?: string, body = REPLAYED) => ({
    "x-hub-signature-256": sign(body),
    ...(delivery === undefined ? {} : { "x-github-delivery": delivery }),
  });

  test("the same signed body with a new delivery id, or none, runs the handler once (202, the first delivery's id)", async () => {
    const s = await open();
    expect(await s.post(signed("d-1"))).toEqual({ status: 202, json: { delivery_id: "d-1" } });
    time += 60_000;
    expect(await s.post(signed("d-2"))).toEqual({ status: 202, json: { delivery_id: "d-1" } });
    expect(await s.post(signed())).toEqual({ status: 202, json: { delivery_id: "d-1" } });
    expect(await s.post(signed("d-1"))).toEqual({ status: 202, json: { delivery_id: "d-1" } });
    expect(s.ran).toEqual(["github d-1", "github d-1"]); // the same delivery again runs as before
    // Another body, or the same body on another route, is another delivery.
    const other = REPLAYED.replace("7", "8");
    expect(await s.post(signed("d-3", other), other)).toEqual({ status: 202, json: { delivery_id: "d-3" } });
    expect((await s.post(signed("d-4"), REPLAYED, "/other")).json).toEqual({ delivery_id: "d-4" });
    expect(s.ran.slice(2)).toEqual(["github d-3", "other d-4"]);
    // The claims are the framework's: the plugin's own store neither lists nor takes them.
    expect(await s.data.forPlugin("gh").list()).toEqual([]);
    await expect(s.data.forPlugin("gh").get("\u0000courier:webhook-body:x")).rejects.toThrow(TypeError);
  });

  test("a delivery whose handler failed gives its claim up: the retry runs, whatever its delivery id", async () => {
    const s = await open();
    expect((await s.post(signed("f-1"), REPLAYED, "/flaky")).status).toBe(500);
    expect(await s.post(signed("f-2"), REPLAYED, "/flaky")).toEqual({
      status: 202,
      json: { delivery_id: "f-2" },
    });
    expect(await s.post(signed("f-3"), REPLAYED, "/flaky")).toEqual({
      status: 202,
      json: { delivery_id: "f-2" },
    });
    expect(s.ran).toEqual(["flaky f-1", "flaky f-2"]);
  });

  test("a body first seen without a delivery id answers its replays with the id given on arrival", async () => {
    const s = await open();
    const first = await s.post(signed());
    expect(first.status).toBe(202);
    expect(await s.post(signed())).toEqual(first);
    expect(await s.post(signed("d-9"))).toEqual(first);
    expect(s.ran).toEqual([`github ${String(first.json.delivery_id)}`]);
  });

  test("after the window (a day, the route's replayWindowMs, or the plugin config's) the same body runs again", async () => {
    const s = await open();
    await s.post(signed("d-1"));
    time += DAY - 1;
    expect((await s.post(signed("d-2"))).json).toEqual({ delivery_id: "d-1" });
    time += 1;
    expect((await s.post(signed("d-3"))).json).toEqual({ delivery_id: "d-3" });
    time += DAY - 1;
    expect((await s.post(signed("d-4"))).json).toEqual({ delivery_id: "d-3" });
    expect(s.ran).toEqual(["github d-1", "github d-3"]);
    // The route's own window (an hour on /other).
    await s.post(signed("o-1"), REPLAYED, "/other");
    time += 60 * 60 * 1000 - 1;
    expect((await s.post(signed("o-2"), REPLAYED, "/other")).json).toEqual({ delivery_id: "o-1" });
    time += 1;
    expect((await s.post(signed("o-3"), REPLAYED, "/other")).json).toEqual({ delivery_id: "o-3" });
    expect(s.ran.slice(2)).toEqual(["other o-1", "other o-3"]);
    await s.stop();
    running.splice(0);

    const short = await open({ replayWindowMs: 1000 });
    time += DAY;
    await short.post(signed("x-1"), REPLAYED, "/other");
    time += 2000;
    await short.post(signed("e-1"));
    // /github's short window prunes its own claims, not /other's (an hour).
    expect((await short.post(signed("x-2"), REPLAYED, "/other")).json).toEqual({ delivery_id: "x-1" });
    time += 999;
    expect((await short.post(signed("e-2"))).json).toEqual({ delivery_id: "e-1" });
    time += 1;
    expect((await short.post(signed("e-3"))).json).toEqual({ delivery_id: "e-3" });
    expect(short.ran).toEqual(["other x-1", "github e-1", "github e-3"]);
    // Claims older than the window are pruned as new bodies come: only e-3's is left of /github's.
    const db = new DatabaseSync(join(folder, "courier.db"));
    const keys = db.prepare("SELECT key FROM plugin_kv").all() as Array<{ key: string }>;
    expect(keys.filter((row) => row.key.includes("POST /github:"))).toHaveLength(1);
    db.close();
  });

  test("a restart of the plugin host on the same store still deduplicates", async () => {
    const before = await open();
    expect((await before.post(signed("d-1"))).json).toEqual({ delivery_id: "d-1" });
    await before.stop();
    running.splice(0);
    time += 60 * 60 * 1000;
    const after = await open();
    expect(await after.post(signed("d-2"))).toEqual({ status: 202, json: { delivery_id: "d-1" } });
    expect(await after.post(signed())).toEqual({ status: 202, json: { delivery_id: "d-1" } });
    expect(after.ran).toEqual([]);
  });

  test("a bearer route is unchanged: the same body with another delivery id runs again", async () => {
    const s = await open();
    const auth = { authorization: `Bearer ${BEARER_SECRET}` };
    expect((await s.post({ ...auth, "idempotency-key": "b-1" }, REPLAYED, "/bearer")).json).toEqual({
      delivery_id: "b-1",
    });
    expect((await s.post({ ...auth, "idempotency-key": "b-2" }, REPLAYED, "/bearer")).json).toEqual({
      delivery_id: "b-2",
    });
    expect(s.ran).toEqual(["bearer b-1", "bearer b-2"]);
  });
});
