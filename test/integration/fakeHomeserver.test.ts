import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:http";
import type { Server } from "node:http";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { FakeHomeserver } from "../support/FakeHomeserver.ts";
import type { FakeHomeserverOptions, FaultKind } from "../support/FakeHomeserver.ts";

const TOKEN = "as_token_secret";
const ROOM_A = "!roomA:fake.test";
const ROOM_B = "!roomB:fake.test";
const enc = encodeURIComponent;
const sendPath = (room: string, txnId: string, query = "", type = "m.room.message") =>
  `/_matrix/client/v3/rooms/${enc(room)}/send/${enc(type)}/${enc(txnId)}${query}`;

const agent = new Agent({ keepAliveTimeout: 10_000, connections: 32 });
const servers: FakeHomeserver[] = [];
let hs: FakeHomeserver;

async function startHs(options: FakeHomeserverOptions = {}): Promise<FakeHomeserver> {
  const server = await FakeHomeserver.start({ asToken: TOKEN, seed: 42, ...options });
  servers.push(server);
  return server;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: Record<string, unknown>;
}

async function call(
  method: "GET" | "PUT" | "POST",
  path: string,
  body?: unknown,
  options: { server?: FakeHomeserver; token?: string | null } = {},
): Promise<Reply> {
  const server = options.server ?? hs;
  const headers: Record<string, string> = { "content-type": "application/json" };
  const token = options.token === undefined ? TOKEN : options.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await request(server.url + path, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    dispatcher: agent,
    headersTimeout: 4000,
    bodyTimeout: 4000,
  });
  const text = await res.body.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON (502 from the "proxy")
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}

const put = (path: string, body: unknown = { msgtype: "m.text", body: "hi" }, server?: FakeHomeserver) =>
  call("PUT", path, body, { server });

beforeAll(async () => {
  hs = await startHs();
});

beforeEach(() => {
  hs.reset();
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await agent.close();
});

describe("FakeHomeserver: storing", () => {
  test("stores room events per room, in arrival order, with sender, device and txnId", async () => {
    const r1 = await put(sendPath(ROOM_A, "t1"), { body: "a1" });
    const r2 = await put(sendPath(ROOM_B, "t1"), { body: "b1" });
    const r3 = await put(sendPath(ROOM_A, "t2", `?user_id=${enc("@ghost:fake.test")}&device_id=DEV`), {
      body: "a2",
    });
    expect([r1.status, r2.status, r3.status]).toEqual([200, 200, 200]);
    const ids = [r1, r2, r3].map((r) => r.json.event_id);
    expect(new Set(ids).size).toBe(3);

    const a = hs.roomEvents(ROOM_A);
    expect(a.map((e) => e.content.body)).toEqual(["a1", "a2"]);
    expect(a[0]).toMatchObject({
      eventId: r1.json.event_id,
      roomId: ROOM_A,
      kind: "message",
      type: "m.room.message",
      txnId: "t1",
      sender: "@bot:fake.test",
      deviceId: undefined,
    });
    expect(a[1]).toMatchObject({ eventId: r3.json.event_id, sender: "@ghost:fake.test", deviceId: "DEV" });
    expect(hs.roomEvents(ROOM_B).map((e) => e.content.body)).toEqual(["b1"]);
    expect(hs.allRoomEvents().map((e) => e.content.body)).toEqual(["a1", "b1", "a2"]);
    expect(hs.rooms()).toEqual([ROOM_A, ROOM_B]);
    expect(hs.stats).toMatchObject({ requests: 3, stored: 3, deduped: 0 });

    const rec = hs.requests[2];
    expect(rec).toMatchObject({
      method: "PUT",
      path: sendPath(ROOM_A, "t2"),
      query: { user_id: "@ghost:fake.test", device_id: "DEV" },
      body: JSON.stringify({ body: "a2" }),
      status: 200,
      fault: undefined,
    });
  });

  test("state, redaction and sendToDevice", async () => {
    const state = `/_matrix/client/v3/rooms/${enc(ROOM_A)}/state/m.room.topic/`;
    const s1 = await put(state, { topic: "one" });
    const s2 = await put(state, { topic: "one" }); // identical state: Synapse returns the same event
    const s3 = await put(state, { topic: "two" });
    expect(s1.json.event_id).toBe(s2.json.event_id);
    expect(s3.json.event_id).not.toBe(s1.json.event_id);

    const redact = `/_matrix/client/v3/rooms/${enc(ROOM_A)}/redact/${enc(String(s3.json.event_id))}/r1`;
    const r = await put(redact, { reason: "spam" });
    expect(r.status).toBe(200);

    const td = await put(
      `/_matrix/client/v3/sendToDevice/org.example.ping/td1?user_id=${enc("@g:fake.test")}`,
      {
        messages: { "@alice:fake.test": { "*": { n: 1 } } },
      },
    );
    expect(td).toMatchObject({ status: 200, json: {} });

    expect(hs.roomEvents(ROOM_A).map((e) => [e.kind, e.type, e.stateKey ?? e.redacts])).toEqual([
      ["state", "m.room.topic", ""],
      ["state", "m.room.topic", ""],
      ["redaction", "m.room.redaction", s3.json.event_id],
    ]);
    expect(hs.toDeviceMessages).toEqual([
      {
        type: "org.example.ping",
        txnId: "td1",
        sender: "@g:fake.test",
        deviceId: undefined,
        messages: { "@alice:fake.test": { "*": { n: 1 } } },
      },
    ]);
    expect(hs.stats).toMatchObject({ stored: 4, deduped: 1 });
  });

  test("record: false counts only", async () => {
    const quiet = await startHs({ record: false });
    await put(sendPath(ROOM_A, "x"), undefined, quiet);
    await put(sendPath(ROOM_A, "x"), undefined, quiet);
    expect(quiet.requests).toEqual([]);
    expect(quiet.roomEvents(ROOM_A)).toEqual([]);
    expect(quiet.stats).toMatchObject({ requests: 2, stored: 1, deduped: 1 });
  });
});

describe("FakeHomeserver: dedupe like Synapse", () => {
  test("dedupes by path, ignoring user_id; a new txnId is a new event", async () => {
    const first = await put(sendPath(ROOM_A, "same", `?user_id=${enc("@a:fake.test")}`), { body: "first" });
    const second = await put(sendPath(ROOM_A, "same", `?user_id=${enc("@b:fake.test")}`), { body: "second" });
    expect(second.status).toBe(200);
    expect(second.json.event_id).toBe(first.json.event_id);
    const third = await put(sendPath(ROOM_A, "other"), { body: "third" });
    expect(third.json.event_id).not.toBe(first.json.event_id);

    expect(hs.roomEvents(ROOM_A).map((e) => [e.content.body, e.sender])).toEqual([
      ["first", "@a:fake.test"],
      ["third", "@bot:fake.test"],
    ]);
    expect(hs.stats).toMatchObject({ stored: 2, deduped: 1 });
  });

  test("sendToDevice and redact are deduped too", async () => {
    const td = "/_matrix/client/v3/sendToDevice/m.x/abc";
    await put(td, { messages: { "@u:fake.test": { D: {} } } });
    await put(td, { messages: { "@u:fake.test": { D: {} } } });
    const redact = `/_matrix/client/v3/rooms/${enc(ROOM_A)}/redact/${enc("$e")}/r`;
    const r1 = await put(redact, {});
    const r2 = await put(redact, {});
    expect(r2.json.event_id).toBe(r1.json.event_id);
    expect(hs.toDeviceMessages).toHaveLength(1);
    expect(hs.roomEvents(ROOM_A)).toHaveLength(1);
    expect(hs.stats.deduped).toBe(2);
  });

  test("clearDedupeCache simulates a restart: the same path stores again", async () => {
    const path = sendPath(ROOM_A, "restart");
    const before = await put(path);
    hs.clearDedupeCache();
    const after = await put(path);
    expect(after.json.event_id).not.toBe(before.json.event_id);
    expect(hs.roomEvents(ROOM_A)).toHaveLength(2);
  });
});

describe("FakeHomeserver: faults", () => {
  test("429 carries retry_after_ms and a Retry-After header (seconds, rounded up); not cached", async () => {
    hs.setFaults({ rate429: 1, retryAfterMs: 1500 });
    const res = await put(sendPath(ROOM_A, "rl"));
    expect(res.status).toBe(429);
    expect(res.json).toMatchObject({ errcode: "M_LIMIT_EXCEEDED", retry_after_ms: 1500 });
    expect(res.headers["retry-after"]).toBe("2");
    expect(res.headers["content-type"]).toBe("application/json");
    expect(hs.roomEvents(ROOM_A)).toEqual([]);

    hs.setFaults({});
    const retry = await put(sendPath(ROOM_A, "rl"));
    expect(retry.status).toBe(200);
    expect(hs.roomEvents(ROOM_A)).toHaveLength(1);
    expect(hs.stats.faults["429"]).toBe(1);
    expect(hs.requests.map((r) => [r.status, r.fault])).toEqual([
      [429, "429"],
      [200, undefined],
    ]);
  });

  test("429 in header-only mode has no retry_after_ms", async () => {
    hs.setFaults({ rate429: 1, retryAfterMs: 3000, retryAfterHeaderOnly: true });
    const res = await put(sendPath(ROOM_A, "rl2"));
    expect(res.status).toBe(429);
    expect(res.json.errcode).toBe("M_LIMIT_EXCEEDED");
    expect(res.json).not.toHaveProperty("retry_after_ms");
    expect(res.headers["retry-after"]).toBe("3");
  });

  test("500 is a Matrix error, 502 an HTML page from the proxy; neither stores", async () => {
    hs.failNext(1, "500");
    hs.failNext(1, "502");
    const r500 = await put(sendPath(ROOM_A, "e"));
    const r502 = await put(sendPath(ROOM_A, "e"));
    expect(r500.status).toBe(500);
    expect(r500.json.errcode).toBe("M_UNKNOWN");
    expect(r502.status).toBe(502);
    expect(r502.headers["content-type"]).toBe("text/html");
    expect(r502.text).toContain("Bad Gateway");
    expect(hs.roomEvents(ROOM_A)).toEqual([]);
    const ok = await put(sendPath(ROOM_A, "e"));
    expect(ok.status).toBe(200);
  });

  test("reset: the client sees a socket error and nothing is stored", async () => {
    hs.failNext(1, "reset");
    await expect(put(sendPath(ROOM_A, "reset"))).rejects.toThrow(/socket|reset|closed/i);
    expect(hs.roomEvents(ROOM_A)).toEqual([]);
    expect(hs.stats.faults.reset).toBe(1);
    expect(hs.requests[0]).toMatchObject({ status: undefined, fault: "reset" });
  });

  test("drop after process: stored, client errors, a retry of the same path gets the same event_id", async () => {
    hs.failNext(1, "dropAfterProcess");
    const path = sendPath(ROOM_A, "drop", `?user_id=${enc("@g:fake.test")}`);
    await expect(put(path, { body: "once" })).rejects.toThrow();
    const stored = hs.roomEvents(ROOM_A);
    expect(stored).toHaveLength(1);

    const retry = await put(path, { body: "once" });
    expect(retry.status).toBe(200);
    expect(retry.json.event_id).toBe(stored[0]?.eventId);
    expect(hs.roomEvents(ROOM_A)).toHaveLength(1);
    expect(hs.stats).toMatchObject({ stored: 1, deduped: 1 });
  });

  test("faults apply only to send-like PUTs unless match says otherwise", async () => {
    hs.setFaults({ rate500: 1 });
    expect((await call("GET", "/_matrix/client/v3/account/whoami")).status).toBe(200);
    expect((await put(sendPath(ROOM_A, "m"))).status).toBe(500);

    hs.setFaults({ rate500: 1, match: (path) => path.endsWith("/whoami") });
    expect((await call("GET", "/_matrix/client/v3/account/whoami")).status).toBe(500);
    expect((await put(sendPath(ROOM_A, "m"))).status).toBe(200);
  });

  test("random faults are deterministic from the seed", async () => {
    const run = async (seed: number): Promise<number[]> => {
      const server = await startHs({ seed, record: false });
      server.setFaults({ rate429: 0.3, rate500: 0.2 });
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++) statuses.push((await put(sendPath(ROOM_A, `d${i}`), {}, server)).status);
      return statuses;
    };
    const [a, b, c] = await Promise.all([run(7), run(7), run(8)]);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(a).toContain(429);
    expect(a).toContain(500);
    expect(a).toContain(200);
  });

  test("setFaults validates the rates", () => {
    expect(() => hs.setFaults({ rate429: 1.5 })).toThrow(RangeError);
    expect(() => hs.setFaults({ rate429: 0.6, rate500: 0.6 })).toThrow(/more than 1/);
    expect(() => hs.failNext(1, "teapot" as FaultKind)).toThrow(RangeError);
  });

  test("delay holds each eligible request before processing", async () => {
    hs.setFaults({ delayMs: 150 });
    const started = Date.now();
    const res = await put(sendPath(ROOM_A, "slow"));
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    const fast = Date.now();
    await call("GET", "/_matrix/client/versions");
    expect(Date.now() - fast).toBeLessThan(140);
  });

  test("pause holds every request until resume", async () => {
    hs.pause();
    let answered = false;
    const pending = put(sendPath(ROOM_A, "p")).then((r) => {
      answered = true;
      return r;
    });
    await hs.waitFor(() => hs.pausedRequests === 1, 2000, "request held");
    await new Promise((r) => setTimeout(r, 50));
    expect(answered).toBe(false);
    expect(hs.roomEvents(ROOM_A)).toEqual([]);
    hs.resume();
    expect((await pending).status).toBe(200);
    expect(hs.roomEvents(ROOM_A)).toHaveLength(1);
  });

  test("stop() resets requests held by pause or hang", async () => {
    const server = await startHs();
    server.pause();
    const held = put(sendPath(ROOM_A, "held"), undefined, server);
    await server.waitFor(() => server.pausedRequests === 1, 2000, "request held");
    await server.stop();
    await expect(held).rejects.toThrow();
    expect(server.roomEvents(ROOM_A)).toEqual([]);

    const hanging = await startHs();
    hanging.failNext(1, "hang");
    const hung = put(sendPath(ROOM_A, "hang"), undefined, hanging);
    await hanging.waitFor(() => hanging.stats.faults.hang === 1, 2000, "hang injected");
    await hanging.stop();
    await expect(hung).rejects.toThrow();
  });
});

describe("FakeHomeserver: validation and other endpoints", () => {
  test("413 M_TOO_LARGE over 65536 bytes of content; 400 M_NOT_JSON; 400 M_BAD_JSON", async () => {
    const big = await put(sendPath(ROOM_A, "big"), { body: "x".repeat(70_000) });
    expect(big.status).toBe(413);
    expect(big.json.errcode).toBe("M_TOO_LARGE");
    const bad = await put(sendPath(ROOM_A, "bad"), "{not json");
    expect(bad.status).toBe(400);
    expect(bad.json.errcode).toBe("M_NOT_JSON");
    const arr = await put(sendPath(ROOM_A, "arr"), [1, 2]);
    expect(arr.json.errcode).toBe("M_BAD_JSON");
    // errors are not cached: the same path with good content stores
    expect((await put(sendPath(ROOM_A, "bad"), { ok: true })).status).toBe(200);
    expect(hs.roomEvents(ROOM_A)).toHaveLength(1);
    expect(hs.stats.rejected).toBe(3);
  });

  test("auth: missing token 401, wrong token 403, versions needs none", async () => {
    const missing = await call("PUT", sendPath(ROOM_A, "a"), {}, { token: null });
    expect(missing.status).toBe(401);
    expect(missing.json.errcode).toBe("M_MISSING_TOKEN");
    const wrong = await call("PUT", sendPath(ROOM_A, "a"), {}, { token: "nope" });
    expect(wrong.status).toBe(403);
    expect(wrong.json.errcode).toBe("M_UNKNOWN_TOKEN");
    const versions = await call("GET", "/_matrix/client/versions", undefined, { token: null });
    expect(versions.status).toBe(200);
    expect(versions.json.versions).toContain("v1.11");
    expect(hs.roomEvents(ROOM_A)).toEqual([]);
  });

  test("unknown endpoints 404 M_UNRECOGNIZED, wrong method 405", async () => {
    const unknown = await call("GET", "/_matrix/client/v3/nope");
    expect(unknown.status).toBe(404);
    expect(unknown.json.errcode).toBe("M_UNRECOGNIZED");
    const r0 = await put(`/_matrix/client/r0/rooms/${enc(ROOM_A)}/send/m.room.message/x`);
    expect(r0.status).toBe(404);
    expect((await call("POST", sendPath(ROOM_A, "x"), {})).status).toBe(405);
  });

  test("register, whoami, join; strict masquerade", async () => {
    const body = { type: "m.login.application_service", username: "ghost_1" };
    const reg = await call("POST", "/_matrix/client/v3/register", body);
    expect(reg.status).toBe(200);
    expect(reg.json.user_id).toBe("@ghost_1:fake.test");
    const again = await call("POST", "/_matrix/client/v3/register", body);
    expect(again.status).toBe(400);
    expect(again.json.errcode).toBe("M_USER_IN_USE");
    const wrongType = await call("POST", "/_matrix/client/v3/register", { username: "x" });
    expect(wrongType.status).toBe(400);

    const who = await call("GET", `/_matrix/client/v3/account/whoami?user_id=${enc("@ghost_1:fake.test")}`);
    expect(who.json).toEqual({ user_id: "@ghost_1:fake.test", is_guest: false });
    const whoBot = await call("GET", "/_matrix/client/v3/account/whoami");
    expect(whoBot.json.user_id).toBe("@bot:fake.test");

    const join = await call(
      "POST",
      `/_matrix/client/v3/join/${enc(ROOM_A)}?user_id=${enc("@ghost_1:fake.test")}`,
      {},
    );
    expect(join.json).toEqual({ room_id: ROOM_A });
    expect(hs.members(ROOM_A)).toEqual(["@ghost_1:fake.test"]);

    const strict = await startHs({ strictMasquerade: true, userNamespace: /^@ghost_.*:fake\.test$/ });
    const foreign = await put(sendPath(ROOM_A, "s", `?user_id=${enc("@stranger:fake.test")}`), {}, strict);
    expect(foreign.status).toBe(403);
    expect(foreign.json.errcode).toBe("M_FORBIDDEN");
    const outside = await call(
      "POST",
      "/_matrix/client/v3/register",
      { ...body, username: "other" },
      { server: strict },
    );
    expect(outside.json.errcode).toBe("M_EXCLUSIVE");
    await call("POST", "/_matrix/client/v3/register", body, { server: strict });
    const mine = await put(sendPath(ROOM_A, "s", `?user_id=${enc("@ghost_1:fake.test")}`), {}, strict);
    expect(mine.status).toBe(200);
  });

  test("waitFor rejects with a clear message when the condition never holds", async () => {
    await expect(hs.waitFor(() => false, 50, "ten events")).rejects.toThrow(
      /ten events not met within 50 ms \(stats: /,
    );
    await expect(hs.waitFor(() => true, 50)).resolves.toBeUndefined();
  });
});

describe("FakeHomeserver: talking to the appservice", () => {
  let as: Server;
  let asUrl: string;
  const received: { url: string; auth: string | undefined; body: string }[] = [];

  beforeAll(async () => {
    as = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        received.push({ url: req.url ?? "", auth: req.headers.authorization, body });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((r) => as.listen(0, "127.0.0.1", r));
    const address = as.address();
    if (address === null || typeof address === "string") throw new Error("no address");
    asUrl = `http://127.0.0.1:${address.port}`;
  });

  afterAll(async () => {
    as.closeAllConnections();
    await new Promise((r) => as.close(r));
  });

  test("pushTransaction and /ping call the appservice with the hs_token", async () => {
    hs.setAppservice({ url: asUrl, hsToken: "hs_secret", id: "courier" });
    const pushed = await hs.pushTransaction("txn 1", { events: [] });
    expect(pushed).toEqual({ status: 200, body: {} });
    const ping = await call("POST", "/_matrix/client/v1/appservice/courier/ping", { transaction_id: "p1" });
    expect(ping.status).toBe(200);
    expect(typeof ping.json.duration_ms).toBe("number");
    expect(received).toEqual([
      { url: "/_matrix/app/v1/transactions/txn%201", auth: "Bearer hs_secret", body: '{"events":[]}' },
      { url: "/_matrix/app/v1/ping", auth: "Bearer hs_secret", body: '{"transaction_id":"p1"}' },
    ]);
    hs.setAppservice(undefined);
    const unset = await call("POST", "/_matrix/client/v1/appservice/courier/ping", {});
    expect(unset.json.errcode).toBe("M_URL_NOT_SET");
  });
});

describe("fakeHomeserverMain (child process)", () => {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
  const node24 = resolve(root, "node_modules/.bin/node");
  let child: ChildProcess | undefined;

  afterEach(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    child = undefined;
  });

  test("starts, prints its URL, serves the control API and exits on SIGTERM", async () => {
    child = spawn(
      existsSync(node24) ? node24 : process.execPath,
      [resolve(root, "test/support/fakeHomeserverMain.ts"), "--as-token", TOKEN, "--seed", "3"],
      { cwd: root, env: { ...process.env, NODE_OPTIONS: "" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const proc = child;
    let stderr = "";
    proc.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));

    const line = await Promise.race([
      new Promise<string>((r) => createInterface({ input: proc.stdout! }).once("line", r)),
      exited.then((code) => Promise.reject(new Error(`child exited ${code}: ${stderr}`))),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`no ready line within 5 s: ${stderr}`)), 5000).unref(),
      ),
    ]);
    const { url } = JSON.parse(line) as { url: string };
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const get = async (path: string) => {
      const res = await request(url + path, { dispatcher: agent });
      return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
    };
    const post = async (path: string, body: unknown = {}) => {
      const res = await request(url + path, {
        method: "POST",
        body: JSON.stringify(body),
        dispatcher: agent,
      });
      await res.body.dump();
      return res.statusCode;
    };
    const send = async (txnId: string) => {
      const res = await request(url + sendPath(ROOM_A, txnId), {
        method: "PUT",
        headers: { authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify({ body: txnId }),
        dispatcher: agent,
      });
      await res.body.dump();
      return res.statusCode;
    };

    expect(await send("one")).toBe(200);
    expect(await post("/_fake/faults", { rate429: 1 })).toBe(200);
    expect(await send("two")).toBe(429);
    expect(await post("/_fake/faults", {})).toBe(200);
    expect(await send("two")).toBe(200);

    const stats = await get("/_fake/stats");
    expect(stats.status).toBe(200);
    expect(stats.json).toMatchObject({ requests: 3, stored: 2, faults: { "429": 1 } });
    const events = await get(`/_fake/rooms/${enc(ROOM_A)}/events`);
    expect((events.json.events as { txnId: string }[]).map((e) => e.txnId)).toEqual(["one", "two"]);

    expect(await post("/_fake/pause")).toBe(200);
    const held = send("three");
    await new Promise((r) => setTimeout(r, 50));
    expect(await post("/_fake/resume")).toBe(200);
    expect(await held).toBe(200);

    proc.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 10_000);
});
