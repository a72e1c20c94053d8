// Webhook routes run their handler only for a request that proves it holds the route's secret:
// the bearer token, or GitHub's HMAC signature of the exact body. Everything else is a 401/403
// Matrix error, the handler never runs, nothing is sent; one plugin's secret opens no other
// plugin's routes. (The happy paths and the basic refusals are in ../plugins/.)
import { createHmac } from "node:crypto";
import fc from "fast-check";
import { pino } from "pino";
import { request } from "undici";
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
