import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { Agent, request } from "undici";
import type { Logger } from "pino";
import { createAppserviceApp, listen } from "../../../src/inbound/AppserviceServer.ts";
import type { AppserviceApp, ListeningAppservice } from "../../../src/inbound/AppserviceServer.ts";
import type { AppserviceOptions } from "../../../src/inbound/options.ts";
import { createLogger } from "../../../src/logging/createLogger.ts";
import { SqliteInboundJournal } from "../../../src/store/sqlite/SqliteInboundJournal.ts";
import type { InboundItem, InboundJournal } from "../../../src/inbound/InboundJournal.ts";

const HS_TOKEN = "hs_token_0123456789abcdef";
const AS_TOKEN = "as_token_fedcba9876543210";
const ROOM = "!room:hs.test";

/** Every log line of every app in this file; checked for secrets at the end. */
const logLines: string[] = [];
const logger: Logger = createLogger({
  level: "debug",
  destination: new Writable({
    write(chunk, _encoding, done) {
      logLines.push(...String(chunk).split("\n").filter(Boolean));
      done();
    },
  }),
});

const dir = mkdtempSync(join(tmpdir(), "courier-as-"));
const dispatcher = new Agent({ keepAliveTimeout: 10_000 });

interface Harness {
  readonly url: string;
  readonly app: AppserviceApp;
  readonly journal: SqliteInboundJournal;
  readonly listening: ListeningAppservice;
  journaled: number;
  pings: Array<string | undefined>;
}

const harnesses: Harness[] = [];
let dbCounter = 0;

async function start(
  overrides: Partial<AppserviceOptions> = {},
  path = join(dir, `db${dbCounter++}.sqlite`),
): Promise<Harness> {
  const journal = new SqliteInboundJournal({ path });
  const harness = { journaled: 0, pings: [] as Array<string | undefined> } as Harness & {
    url: string;
    app: AppserviceApp;
    journal: SqliteInboundJournal;
    listening: ListeningAppservice;
  };
  const app = createAppserviceApp({
    hsToken: HS_TOKEN,
    journal,
    onJournaled: () => harness.journaled++,
    onPing: (id) => harness.pings.push(id),
    queries: {
      userExists: async (userId) => {
        if (userId === "@boom:hs.test") throw new Error("query backend down");
        return userId.startsWith("@bridge_");
      },
      aliasExists: async (alias) => alias.startsWith("#bridge_"),
    },
    logger,
    ...overrides,
  });
  const listening = await listen(app, { host: "127.0.0.1", port: 0 });
  Object.assign(harness, { url: `http://127.0.0.1:${listening.port}`, app, journal, listening });
  harnesses.push(harness);
  return harness;
}

async function stop(h: Harness): Promise<void> {
  harnesses.splice(harnesses.indexOf(h), 1);
  await h.listening.close();
  await h.journal.close();
}

interface Reply {
  status: number;
  contentType: string;
  text: string;
  json: Record<string, unknown>;
}

async function call(
  h: Harness,
  method: "GET" | "PUT" | "POST" | "DELETE",
  path: string,
  body?: unknown,
  options: { auth?: string | null; contentType?: string | null } = {},
): Promise<Reply> {
  const headers: Record<string, string> = {};
  const contentType = options.contentType === undefined ? "application/json" : options.contentType;
  if (contentType !== null && body !== undefined) headers["content-type"] = contentType;
  const auth = options.auth === undefined ? `Bearer ${HS_TOKEN}` : options.auth;
  if (auth !== null) headers.authorization = auth;
  const payload =
    body === undefined
      ? undefined
      : typeof body === "string" || Buffer.isBuffer(body)
        ? body
        : JSON.stringify(body);
  const res = await request(h.url + path, { method, headers, body: payload, dispatcher });
  const text = await res.body.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // asserted by the caller through `text`
  }
  return { status: res.statusCode, contentType: String(res.headers["content-type"] ?? ""), text, json };
}

const put = (h: Harness, txnId: string, body: unknown, options?: Parameters<typeof call>[4]) =>
  call(h, "PUT", `/_matrix/app/v1/transactions/${encodeURIComponent(txnId)}`, body, options);

const message = (n: number, extra: Record<string, unknown> = {}) => ({
  event_id: `$e${n}`,
  room_id: ROOM,
  sender: "@alice:hs.test",
  type: "m.room.message",
  origin_server_ts: 1_700_000_000_000 + n,
  content: { msgtype: "m.text", body: `message ${n}` },
  ...extra,
});

const items = async (h: Harness): Promise<InboundItem[]> => (await h.journal.pending(0, 10_000)).items;

function expectMatrixError(reply: Reply, status: number, errcode: string): void {
  expect({ status: reply.status, errcode: reply.json.errcode }).toEqual({ status, errcode });
  expect(typeof reply.json.error).toBe("string");
  expect(Object.keys(reply.json).sort()).toEqual(["errcode", "error"]);
  expect(reply.contentType).toMatch(/^application\/json/);
  expect(reply.text).not.toMatch(/<html|<pre|\n\s+at /i);
}

let hs: Harness;
beforeAll(async () => {
  hs = await start();
});

afterAll(async () => {
  for (const h of [...harnesses]) await stop(h);
  await dispatcher.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("transactions", () => {
  test("answers 200 once journaled, with every part in order and both spellings read", async () => {
    const h = await start();
    const typing = { type: "m.typing", room_id: ROOM, content: { user_ids: ["@alice:hs.test"] } };
    const body = {
      events: [message(1), message(2, { room_id: "!other:hs.test" })],
      ephemeral: [typing],
      "de.sorunome.msc2409.ephemeral": [typing, { type: "m.presence", sender: "@bob:hs.test", content: {} }],
      to_device: [
        { type: "org.example.a", sender: "@alice:hs.test", to_user_id: "@bot:hs.test", content: {} },
      ],
      "de.sorunome.msc2409.to_device": [
        { type: "org.example.b", sender: "@alice:hs.test", to_user_id: "@ghost:hs.test", content: {} },
      ],
      "org.matrix.msc3202.device_lists": { changed: ["@alice:hs.test"], left: [] },
      "org.matrix.msc3202.device_one_time_keys_count": { "@bot:hs.test": { DEV: { signed_curve25519: 10 } } },
      "org.matrix.msc3202.device_unused_fallback_key_types": {
        "@bot:hs.test": { DEV: ["signed_curve25519"] },
      },
      "org.example.unknown": { ignored: true },
    };
    const reply = await put(h, "1", body);
    expect(reply.status).toBe(200);
    expect(reply.json).toEqual({});
    expect(h.journaled).toBe(1);
    const journaled = await items(h);
    expect(journaled.map((i) => [i.txnId, i.kind, i.lane, i.eventId])).toEqual([
      ["1", "event", `room:${ROOM}`, "$e1"],
      ["1", "event", "room:!other:hs.test", "$e2"],
      ["1", "ephemeral", `ephemeral:${ROOM}`, undefined],
      ["1", "ephemeral", "ephemeral:global", undefined],
      ["1", "toDevice", "todevice:@bot:hs.test", undefined],
      ["1", "toDevice", "todevice:@ghost:hs.test", undefined],
      ["1", "deviceLists", "e2ee", undefined],
      ["1", "otkCounts", "e2ee", undefined],
      ["1", "otkCounts", "e2ee", undefined],
    ]);
    expect(JSON.parse(journaled[0]!.json)).toEqual(message(1));
    expect(JSON.parse(journaled[2]!.json)).toEqual(typing);
    const line = logLines
      .map((l) => JSON.parse(l))
      .find((l) => l.msg === "transaction journaled" && l.txnId === "1");
    expect(line).toMatchObject({ level: 20, events: 2, ephemeral: 2, toDevice: 2, e2ee: 3 });
    expect(typeof line.durationMs).toBe("number");
  });

  test("a retry of a transaction, re-serialised as Synapse does, is answered 200 and journals nothing again, across restarts", async () => {
    const path = join(dir, "replay.sqlite");
    let h = await start({}, path);
    const body = (age: number) => ({ events: [message(1, { unsigned: { age } }), message(2)] });
    expect((await put(h, "42", body(10))).status).toBe(200);
    expect((await put(h, "42", JSON.stringify(body(2010), null, 1))).status).toBe(200);
    // The same events in another transaction are still the same events.
    expect((await put(h, "43", { events: [message(2)] })).status).toBe(200);
    expect(h.journaled).toBe(1);
    expect(await items(h)).toHaveLength(2);

    await stop(h);
    h = await start({}, path);
    const reply = await put(h, "42", body(60_000));
    expect(reply.status).toBe(200);
    expect(reply.json).toEqual({});
    expect(h.journaled).toBe(0);
    expect(await items(h)).toHaveLength(2);
  });

  test("the same txnId with new events journals them (a homeserver whose counter was reset)", async () => {
    const h = await start();
    await put(h, "1", { events: [message(1)] });
    expect((await put(h, "1", { events: [message(2)] })).status).toBe(200);
    expect(h.journaled).toBe(2);
    expect((await items(h)).map((i) => i.eventId)).toEqual(["$e1", "$e2"]);
  });

  test("a body sent without a content type (or a non-JSON one) is still read and journaled", async () => {
    const h = await start();
    expect((await put(h, "a", { events: [message(1)] }, { contentType: null })).status).toBe(200);
    expect((await put(h, "b", { events: [message(2)] }, { contentType: "text/plain" })).status).toBe(200);
    expect((await items(h)).map((i) => i.eventId)).toEqual(["$e1", "$e2"]);
  });

  test("a 16 MB transaction is accepted and journaled whole", async () => {
    const h = await start();
    const padding = "x".repeat(160 * 1024);
    const body = JSON.stringify({
      events: Array.from({ length: 100 }, (_, n) => message(n, { content: { padding } })),
    });
    expect(body.length).toBeGreaterThan(16_000_000);
    expect((await put(h, "big", body)).status).toBe(200);
    const journaled = await items(h);
    expect(journaled).toHaveLength(100);
    expect(journaled[99]!.json.length).toBeGreaterThan(160 * 1024);
  });

  test("a body over maxBodyBytes is answered 413 M_TOO_LARGE and nothing is journaled", async () => {
    const h = await start({ maxBodyBytes: 1024 * 1024 });
    const body = JSON.stringify({
      events: [message(1, { content: { padding: "x".repeat(2 * 1024 * 1024) } })],
    });
    expectMatrixError(await put(h, "huge", body), 413, "M_TOO_LARGE");
    expect(await items(h)).toEqual([]);
    // The connection is usable afterwards.
    expect((await put(h, "small", { events: [message(2)] })).status).toBe(200);
  });

  test("the default limit (32 MiB) refuses a 33 MiB body", async () => {
    const body = Buffer.alloc(33 * 1024 * 1024, 0x20);
    expectMatrixError(await put(hs, "default-limit", body), 413, "M_TOO_LARGE");
  });

  test.each([
    ["malformed JSON", 400, "M_NOT_JSON", "{"],
    ["an empty body", 400, "M_NOT_JSON", ""],
    ["a JSON array", 400, "M_BAD_JSON", "[]"],
  ])("%s is answered %d %s and nothing is journaled", async (_name, status, errcode, body) => {
    const h = await start();
    expectMatrixError(await put(h, "bad", body), status, errcode);
    expect(await items(h)).toEqual([]);
    expect(h.journaled).toBe(0);
  });

  test("malformed items are journaled as rejected with their reasons; the good ones beside them are handled", async () => {
    const h = await start();
    const toBot = {
      type: "org.example.a",
      sender: "@alice:hs.test",
      to_user_id: "@bot:hs.test",
      content: {},
    };
    const body = {
      events: [message(1), "$e9", message(2, { content: undefined }), message(3)],
      to_device: [null, toBot],
      ephemeral: "x",
    };
    const reply = await put(h, "mixed", body);
    expect(reply.status).toBe(200);
    expect((await items(h)).map((i) => i.eventId ?? i.kind)).toEqual(["$e1", "$e3", "toDevice"]);
    const rejected = await h.journal.list({ state: "rejected", limit: 10 });
    expect(rejected.map((r) => r.error).reverse()).toEqual([
      "`events[1]` must be an object, got a string",
      "events[2] has no `content` object",
      "`ephemeral` must be an array, got a string",
      "`to_device[0]` must be an object, got null",
    ]);
    const warning = logLines.map((l) => JSON.parse(l)).find((l) => l.msg === "malformed items rejected");
    expect(warning).toMatchObject({ level: 40, txnId: "mixed", rejected: 4 });
  });

  test("a journal that cannot commit makes the answer 500, never 200", async () => {
    const failing: InboundJournal = {
      journal: async () => {
        throw new Error("disk I/O error");
      },
      pending: async () => ({ items: [], readUpTo: 0 }),
      pendingInLane: async () => [],
      lastSeq: async () => 0,
      prune: async () => 0,
      record: async () => undefined,
      list: async () => [],
      totals: async () => ({ pending: 0, done: 0, dead: 0, rejected: 0 }),
    };
    let woken = 0;
    const h = await start({ journal: failing, onJournaled: () => woken++ });
    const reply = await put(h, "doomed", { events: [message(1)] });
    expectMatrixError(reply, 500, "M_UNKNOWN");
    expect(reply.text).not.toContain("disk I/O error");
    expect(woken).toBe(0);
    const line = logLines.map((l) => JSON.parse(l)).find((l) => l.level === 50 && l.txnId === "doomed");
    expect(line?.err?.message).toBe("disk I/O error");
  });

  test("while shutting down (accepting() false) transactions are answered 503 and not read", async () => {
    let accepting = false;
    const h = await start({ accepting: () => accepting });
    const reply = await put(h, "later", { events: [message(1)] });
    expectMatrixError(reply, 503, "M_UNKNOWN");
    expect(reply.json.error).toMatch(/shutting down/);
    expect(await items(h)).toEqual([]);
    accepting = true;
    expect((await put(h, "later", { events: [message(1)] })).status).toBe(200);
  });
});

describe("authentication", () => {
  const body = { events: [message(1)] };

  test("a missing token is 401 M_MISSING_TOKEN", async () => {
    expectMatrixError(await put(hs, "auth", body, { auth: null }), 401, "M_MISSING_TOKEN");
  });

  test.each([
    ["a wrong token", "Bearer nope"],
    ["the as_token", `Bearer ${AS_TOKEN}`],
    ["the Basic scheme", `Basic ${Buffer.from(`x:${HS_TOKEN}`).toString("base64")}`],
    ["the token without a scheme", HS_TOKEN],
    ["a longer token with the right prefix", `Bearer ${HS_TOKEN}x`],
  ])("%s is 403 M_FORBIDDEN", async (_name, auth) => {
    expectMatrixError(await put(hs, "auth", body, { auth }), 403, "M_FORBIDDEN");
  });

  test("the scheme is case-insensitive", async () => {
    expect((await put(hs, "auth-case", body, { auth: `bearer ${HS_TOKEN}` })).status).toBe(200);
  });

  test("?access_token= is refused by default and accepted with allowQueryToken", async () => {
    const path = `/_matrix/app/v1/transactions/q1?access_token=${HS_TOKEN}`;
    const refused = await call(hs, "PUT", path, body, { auth: null });
    expectMatrixError(refused, 401, "M_MISSING_TOKEN");
    expect(refused.json.error).toMatch(/allowQueryToken/);

    const h = await start({ allowQueryToken: true });
    expect((await call(h, "PUT", path, body, { auth: null })).status).toBe(200);
    expect(await items(h)).toHaveLength(1);
    const wrong = await call(h, "PUT", "/_matrix/app/v1/transactions/q2?access_token=nope", body, {
      auth: null,
    });
    expectMatrixError(wrong, 403, "M_FORBIDDEN");
  });

  test("when both the header and ?access_token= are sent, both must be the hs_token", async () => {
    const path = (token: string) => `/_matrix/app/v1/transactions/both-${token.length}?access_token=${token}`;
    expectMatrixError(await call(hs, "PUT", path("nope"), body), 403, "M_FORBIDDEN");
    expect((await call(hs, "PUT", path(HS_TOKEN), body)).status).toBe(200);
  });

  test("queries and ping need the token too", async () => {
    expectMatrixError(
      await call(hs, "GET", "/_matrix/app/v1/users/@bridge_a:hs.test", undefined, { auth: null }),
      401,
      "M_MISSING_TOKEN",
    );
    expectMatrixError(
      await call(hs, "POST", "/_matrix/app/v1/ping", {}, { auth: "Bearer x" }),
      403,
      "M_FORBIDDEN",
    );
  });
});

describe("queries, ping, health", () => {
  test("user and alias queries: 200 when ours, 404 M_NOT_FOUND otherwise, 500 when the query throws", async () => {
    const user = (id: string) => call(hs, "GET", `/_matrix/app/v1/users/${encodeURIComponent(id)}`);
    const room = (alias: string) => call(hs, "GET", `/_matrix/app/v1/rooms/${encodeURIComponent(alias)}`);
    expect(await user("@bridge_alice:hs.test")).toMatchObject({ status: 200, json: {} });
    expectMatrixError(await user("@alice:hs.test"), 404, "M_NOT_FOUND");
    expectMatrixError(await user("@boom:hs.test"), 500, "M_UNKNOWN");
    expect(await room("#bridge_room:hs.test")).toMatchObject({ status: 200, json: {} });
    expectMatrixError(await room("#room:hs.test"), 404, "M_NOT_FOUND");
  });

  test("without queries nothing exists", async () => {
    const h = await start({ queries: undefined });
    expectMatrixError(await call(h, "GET", "/_matrix/app/v1/users/@bridge_a:hs.test"), 404, "M_NOT_FOUND");
  });

  test("ping answers 200 and records when it came", async () => {
    const h = await start();
    expect(h.app.lastPingAt()).toBeUndefined();
    const before = Date.now();
    expect(
      await call(h, "POST", "/_matrix/app/v1/ping", { transaction_id: "courier-start-1" }),
    ).toMatchObject({
      status: 200,
      json: {},
    });
    expect(await call(h, "POST", "/_matrix/app/v1/ping")).toMatchObject({ status: 200 });
    expect(h.app.lastPingAt()).toBeGreaterThanOrEqual(before);
    expect(h.pings).toEqual(["courier-start-1", undefined]);
    expectMatrixError(await call(h, "POST", "/_matrix/app/v1/ping", "{"), 400, "M_NOT_JSON");
  });

  test("health needs no token; ready answers 200 or 503 with the checks", async () => {
    expect(await call(hs, "GET", "/health", undefined, { auth: null })).toMatchObject({
      status: 200,
      json: { status: "ok" },
    });
    let ready = false;
    const h = await start({ readiness: () => ({ ready, checks: { ping: { ok: ready } } }) });
    expect(await call(h, "GET", "/ready", undefined, { auth: null })).toMatchObject({
      status: 503,
      json: { ready: false, checks: { ping: { ok: false } } },
    });
    ready = true;
    expect((await call(h, "GET", "/ready", undefined, { auth: null })).status).toBe(200);
  });
});

describe("everything else", () => {
  test.each([
    ["GET", "/_matrix/app/v1/nothing"],
    ["PUT", "/transactions/1"],
    ["PUT", "/_matrix/app/unstable/transactions/1"],
    ["GET", "/favicon.ico"],
  ] as const)("%s %s is 404 M_UNRECOGNIZED", async (method, path) => {
    expectMatrixError(await call(hs, method, path, method === "PUT" ? {} : undefined), 404, "M_UNRECOGNIZED");
  });

  test.each([
    ["GET", "/_matrix/app/v1/transactions/1"],
    ["DELETE", "/_matrix/app/v1/users/@a:hs.test"],
    ["GET", "/_matrix/app/v1/ping"],
  ] as const)("%s %s is 405 M_UNRECOGNIZED", async (method, path) => {
    expectMatrixError(await call(hs, method, path), 405, "M_UNRECOGNIZED");
  });

  test("a path segment that is not valid URL encoding is a JSON 400", async () => {
    expectMatrixError(await call(hs, "GET", "/_matrix/app/v1/users/%E0%A4%A"), 400, "M_INVALID_PARAM");
  });

  test("an unsupported content encoding is a JSON error, not an HTML page", async () => {
    const reply = await call(hs, "PUT", "/_matrix/app/v1/transactions/enc", "{}", {});
    expect(reply.status).toBe(200);
    const res = await request(`${hs.url}/_matrix/app/v1/transactions/enc2`, {
      method: "PUT",
      headers: { authorization: `Bearer ${HS_TOKEN}`, "content-encoding": "snappy" },
      body: "{}",
      dispatcher,
    });
    const text = await res.body.text();
    expect(res.statusCode).toBe(415);
    expect(JSON.parse(text)).toMatchObject({ errcode: "M_UNKNOWN" });
  });

  test("close() returns promptly although keep-alive sockets are open", async () => {
    const h = await start();
    expect((await call(h, "GET", "/health")).status).toBe(200);
    const started = Date.now();
    await stop(h);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

// Runs last: every request above sent the hs_token (in headers, in the query string, wrong ones).
test("no token reached the logs", () => {
  expect(logLines.length).toBeGreaterThan(10);
  const all = logLines.join("\n");
  expect(all).not.toContain(HS_TOKEN);
  expect(all).not.toContain(AS_TOKEN);
  expect(all).not.toMatch(/access_token=/);
});
