// The operator dashboard's HTTP surface on a whole Courier against the fake homeserver: who gets
// in (token, cookie), what is refused (no token, wrong token, cross-origin POSTs), and what the
// JSON API reports and does (lanes, sends, dead letters, retry, plugins, throughput, inbound).
import { jest } from "@jest/globals";
import { request } from "undici";
import { z } from "zod";
import { definePlugin } from "../../../src/plugins/definePlugin.ts";
import type { AdminState, InboundPanel } from "../../../src/ops/admin/adminState.ts";
import { startDashboardStack, type DashboardStack } from "../../support/dashboardStack.ts";

const ROOM = "!ok:fake.test";
const BANNED = "!banned:fake.test";
const SLOW = "!slow:fake.test";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: Record<string, unknown>;
}

async function call(
  stack: DashboardStack,
  method: "GET" | "POST",
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> {
  const res = await request(`${stack.url}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
  });
  const text = await res.body.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // HTML or empty
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}

const bearer = (stack: DashboardStack) => ({ authorization: `Bearer ${stack.adminToken!}` });
const origin = (stack: DashboardStack) => ({ origin: stack.url });
const form = { "content-type": "application/x-www-form-urlencoded" };

/** Logs in through the form like a browser; returns the `Cookie` header to send back. */
async function login(stack: DashboardStack): Promise<string> {
  const res = await call(
    stack,
    "POST",
    "/admin/login",
    { ...form, ...origin(stack) },
    `token=${encodeURIComponent(stack.adminToken!)}`,
  );
  expect(res.status).toBe(303);
  const setCookie = ([] as string[]).concat(res.headers["set-cookie"] ?? []);
  expect(setCookie).toHaveLength(1);
  return setCookie[0]!.split(";")[0]!;
}

const state = async (stack: DashboardStack) =>
  (await call(stack, "GET", "/admin/api/state", bearer(stack))).json as unknown as AdminState;

let stacks: DashboardStack[] = [];
afterEach(async () => {
  await Promise.all(stacks.map((s) => s.stop()));
  stacks = [];
});
const start = async (...args: Parameters<typeof startDashboardStack>) => {
  const stack = await startDashboardStack(...args);
  stacks.push(stack);
  return stack;
};

describe("dashboard authentication", () => {
  test("without admin.token there is no dashboard: /admin answers 404 like any unknown path", async () => {
    const stack = await start({ adminToken: null });
    for (const path of ["/admin/", "/admin/api/state", "/admin/login"]) {
      const res = await call(stack, path === "/admin/login" ? "POST" : "GET", path);
      expect(res).toMatchObject({ status: 404, json: { errcode: "M_UNRECOGNIZED" } });
    }
  }, 30_000);

  test("no token → 401, wrong token → 403, the right one → 200; every route, Matrix-style errors", async () => {
    const stack = await start();
    const routes: Array<["GET" | "POST", string]> = [
      ["GET", "/admin/"],
      ["GET", "/admin"],
      ["GET", "/admin/app.js"],
      ["GET", "/admin/api/state"],
      ["GET", "/admin/api/inbound"],
      ["POST", "/admin/api/dead/retry"],
      ["POST", "/admin/api/dead/abc/retry"],
      ["POST", "/admin/logout"],
      ["GET", "/admin/no-such-page"],
    ];
    for (const [method, path] of routes) {
      const none = await call(stack, method, path);
      expect({ path, status: none.status, json: none.json }).toEqual({
        path,
        status: 401,
        json: { errcode: "M_UNAUTHORIZED", error: expect.stringContaining("admin token") },
      });
      expect(none.headers["www-authenticate"]).toBe('Bearer realm="courier-admin"');
      const empty = await call(stack, method, path, { authorization: "" });
      expect(empty.status).toBe(401);
      for (const authorization of [`Bearer ${stack.adminToken!}x`, "Bearer nope", stack.adminToken!]) {
        const wrong = await call(stack, method, path, { authorization });
        expect({ path, status: wrong.status, errcode: wrong.json.errcode }).toEqual({
          path,
          status: 403,
          errcode: "M_FORBIDDEN",
        });
      }
      // The right token starts the address's failure count afresh (5 would make it wait).
      expect((await call(stack, "GET", "/admin/api/state", bearer(stack))).status).toBe(200);
    }
    const page = await call(stack, "GET", "/admin/", bearer(stack));
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toMatch(/^text\/html/);
    expect(page.text).toContain('<script src="app.js"></script>');
    expect(page.headers["content-security-policy"]).toContain("script-src 'self'");
    expect(page.headers["cache-control"]).toBe("no-store");
    expect((await call(stack, "GET", "/admin/app.js", bearer(stack))).headers["content-type"]).toMatch(
      /^text\/javascript/,
    );
    expect((await call(stack, "GET", "/admin/api/state", bearer(stack))).status).toBe(200);
    const redirect = await call(stack, "GET", "/admin", bearer(stack));
    expect(redirect).toMatchObject({ status: 308, headers: { location: "/admin/" } });
    expect(await call(stack, "GET", "/admin/nope", bearer(stack))).toMatchObject({
      status: 404,
      json: { errcode: "M_UNRECOGNIZED" },
    });
  }, 30_000);

  test("the chat page and its credentials exist only when configured, behind the token; login.js needs none", async () => {
    const plain = await start();
    for (const path of ["/admin/chat", "/admin/chat.js", "/admin/api/chat"]) {
      expect(await call(plain, "GET", path, bearer(plain))).toMatchObject({ status: 404 });
    }
    const login = await call(plain, "GET", "/admin/login.js");
    expect(login.status).toBe(200);
    expect(login.headers["content-type"]).toMatch(/^text\/javascript/);

    const chat = {
      userId: "@alice:fake.test",
      password: "pw-alice",
      homeserverUrl: "http://127.0.0.1:8448/",
    };
    const stack = await start({ chat });
    for (const path of ["/admin/chat", "/admin/chat.js", "/admin/api/chat"]) {
      expect((await call(stack, "GET", path)).status).toBe(401);
    }
    const page = await call(stack, "GET", "/admin/chat", bearer(stack));
    expect(page.status).toBe(200);
    expect(page.headers["content-security-policy"]).toContain("connect-src 'self' http://127.0.0.1:8448;");
    // Only the chat page may call the homeserver.
    const dashboard = await call(stack, "GET", "/admin/", bearer(stack));
    expect(dashboard.headers["content-security-policy"]).toContain("connect-src 'self';");
    expect(dashboard.text).toContain('href="chat"');
    expect((await call(stack, "GET", "/admin/api/chat", bearer(stack))).json).toEqual({
      homeserverUrl: chat.homeserverUrl,
      userId: chat.userId,
      password: chat.password,
      botUserId: "@bot:fake.test",
    });
  }, 30_000);

  test("a browser without a session gets the login form (401); the form exchanges the token for an HttpOnly SameSite=Strict cookie", async () => {
    const stack = await start();
    const html = { accept: "text/html,application/xhtml+xml,*/*;q=0.8" };
    const anonymous = await call(stack, "GET", "/admin/", html);
    expect(anonymous.status).toBe(401);
    expect(anonymous.text).toContain('<form class="login" method="post" action="/admin/login">');

    const wrong = await call(
      stack,
      "POST",
      "/admin/login",
      { ...form, ...origin(stack) },
      "token=wrong-token",
    );
    expect(wrong.status).toBe(403);
    expect(wrong.text).toContain("That is not the admin token.");
    expect(wrong.headers["set-cookie"]).toBeUndefined();
    expect((await call(stack, "POST", "/admin/login", { ...form, ...origin(stack) }, "token=")).status).toBe(
      401,
    );

    const res = await call(
      stack,
      "POST",
      "/admin/login",
      { ...form, ...origin(stack) },
      `token=${encodeURIComponent(stack.adminToken!)}`,
    );
    expect(res).toMatchObject({ status: 303, headers: { location: "/admin/" } });
    const setCookie = String(res.headers["set-cookie"]);
    expect(setCookie).toMatch(/^courier_admin=[A-Za-z0-9_-]{43}; /);
    expect(setCookie).toContain("; HttpOnly");
    expect(setCookie).toContain("; SameSite=Strict");
    expect(setCookie).toContain("; Path=/admin");
    expect(setCookie).toContain("; Max-Age=43200");
    expect(setCookie).not.toContain(stack.adminToken!);
    expect(setCookie).not.toContain("Secure");
    // X-Forwarded-Proto from a client that is not a trusted proxy is ignored (see the proxy test).
    const spoofed = await call(
      stack,
      "POST",
      "/admin/login",
      { ...form, ...origin(stack), "x-forwarded-proto": "https" },
      `token=${encodeURIComponent(stack.adminToken!)}`,
    );
    expect(String(spoofed.headers["set-cookie"])).not.toContain("Secure");
    const cookie = setCookie.split(";")[0]!;

    expect((await call(stack, "GET", "/admin/", { ...html, cookie })).status).toBe(200);
    expect((await call(stack, "GET", "/admin/api/state", { cookie })).status).toBe(200);
    expect((await call(stack, "GET", "/admin/api/inbound", { cookie })).status).toBe(200);
    // A made-up or ended session is no session.
    expect(
      await call(stack, "GET", "/admin/api/state", { cookie: `courier_admin=${"A".repeat(43)}` }),
    ).toMatchObject({ status: 401, json: { errcode: "M_UNAUTHORIZED" } });

    const logout = await call(stack, "POST", "/admin/logout", { cookie, ...origin(stack) });
    expect(logout.status).toBe(303);
    expect(String(logout.headers["set-cookie"])).toContain("courier_admin=; Path=/admin; Max-Age=0");
    const after = await call(stack, "GET", "/admin/api/state", { cookie });
    expect(after).toMatchObject({
      status: 401,
      json: { error: expect.stringContaining("session has ended") },
    });
    const page = await call(stack, "GET", "/admin/", { ...html, cookie });
    expect(page.status).toBe(401);
    expect(page.text).toContain("log in again");
  }, 30_000);

  test("CSRF: a POST on the cookie needs the dashboard's own Origin; the bearer token needs none", async () => {
    const stack = await start();
    const cookie = await login(stack);
    const retryAll = (headers: Record<string, string>) =>
      call(stack, "POST", "/admin/api/dead/retry", headers);
    const refusals: Array<Record<string, string>> = [
      {},
      { origin: "http://evil.example" },
      { origin: "null" },
      { referer: "http://evil.example/page" },
      { origin: stack.url, "sec-fetch-site": "cross-site" },
      { origin: stack.url, "sec-fetch-site": "same-site" },
    ];
    for (const extra of refusals) {
      const res = await retryAll({ cookie, ...extra });
      expect({ extra, status: res.status, errcode: res.json.errcode }).toEqual({
        extra,
        status: 403,
        errcode: "M_FORBIDDEN",
      });
    }
    expect((await retryAll({ cookie, origin: stack.url, "sec-fetch-site": "same-origin" })).status).toBe(200);
    expect((await retryAll({ cookie, referer: `${stack.url}/admin/` })).status).toBe(200);
    // X-Forwarded-Host from a client that is not a trusted proxy does not make another origin ours.
    expect(
      (await retryAll({ cookie, origin: "https://ops.example.org", "x-forwarded-host": "ops.example.org" }))
        .status,
    ).toBe(403);
    expect((await retryAll(bearer(stack))).status).toBe(200);
    // Logging out from another site is refused too; logging in from another site as well.
    expect(
      (await call(stack, "POST", "/admin/logout", { cookie, origin: "http://evil.example" })).status,
    ).toBe(403);
    const crossLogin = await call(
      stack,
      "POST",
      "/admin/login",
      { ...form, origin: "http://evil.example" },
      `token=${encodeURIComponent(stack.adminToken!)}`,
    );
    expect(crossLogin).toMatchObject({ status: 403, json: { errcode: "M_FORBIDDEN" } });
    expect(crossLogin.headers["set-cookie"]).toBeUndefined();
  }, 30_000);

  test("behind a trusted proxy (appservice.trustedProxies), its X-Forwarded-Proto/-Host/-For count", async () => {
    const stack = await start({ config: { appservice: { trustedProxies: ["loopback"] } } });
    const proxied = await call(
      stack,
      "POST",
      "/admin/login",
      {
        ...form,
        origin: "https://ops.example.org",
        "x-forwarded-host": "ops.example.org",
        "x-forwarded-proto": "https",
      },
      `token=${encodeURIComponent(stack.adminToken!)}`,
    );
    expect(proxied.status).toBe(303);
    const setCookie = String(proxied.headers["set-cookie"]);
    expect(setCookie).toMatch(/; Secure$/);
    const cookie = setCookie.split(";")[0]!;
    // The browser's origin is the proxy's host.
    const retryAll = (headers: Record<string, string>) =>
      call(stack, "POST", "/admin/api/dead/retry", { cookie, ...headers });
    expect(
      (await retryAll({ origin: "https://ops.example.org", "x-forwarded-host": "ops.example.org" })).status,
    ).toBe(200);
    expect(
      (await retryAll({ origin: "https://evil.example", "x-forwarded-host": "ops.example.org" })).status,
    ).toBe(403);
    // The client address is the forwarded one: one client's wrong tokens do not make another wait.
    const wrongFrom = (ip: string) =>
      call(stack, "GET", "/admin/api/state", { authorization: "Bearer wrong-token", "x-forwarded-for": ip });
    for (let i = 0; i < 6; i++) await wrongFrom("203.0.113.7");
    expect((await wrongFrom("203.0.113.7")).status).toBe(429);
    expect((await wrongFrom("203.0.113.8")).status).toBe(403);
  }, 30_000);

  test("wrong tokens from one address: after 5, it waits (429 M_LIMIT_EXCEEDED, retry_after_ms), even with the right token; logged once", async () => {
    const stack = await start();
    const statuses: number[] = [];
    for (let i = 0; i < 50; i++) {
      const res = await call(
        stack,
        "POST",
        "/admin/login",
        { ...form, ...origin(stack) },
        `token=wrong-${i}`,
      );
      statuses.push(res.status);
    }
    expect(statuses.slice(0, 5)).toEqual([403, 403, 403, 403, 403]);
    expect(statuses.slice(5)).toEqual(Array(45).fill(429));
    const rightToken = `token=${encodeURIComponent(stack.adminToken!)}`;
    const waiting = await call(stack, "POST", "/admin/login", { ...form, ...origin(stack) }, rightToken);
    expect(waiting.status).toBe(429);
    expect(waiting.text).toContain("Too many failed attempts");
    expect(Number(waiting.headers["retry-after"])).toBeGreaterThan(0);
    // The bearer token is throttled by the same count (one address, either way in).
    const api = await call(stack, "GET", "/admin/api/state", bearer(stack));
    expect(api).toMatchObject({ status: 429, json: { errcode: "M_LIMIT_EXCEEDED" } });
    expect(api.json.retry_after_ms).toBeGreaterThan(0);
    expect(api.json.retry_after_ms).toBeLessThanOrEqual(1000);
    // Once the wait is over the right token works (tries while waiting are not failures).
    const deadline = Date.now() + 5000;
    let status = 429;
    while (status === 429 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      status = (await call(stack, "GET", "/admin/api/state", bearer(stack))).status;
    }
    expect(status).toBe(200);
    const throttledLines = stack
      .logs()
      .split("\n")
      .filter((line) => line.includes("it now waits between tries"));
    expect(throttledLines).toHaveLength(1);
    expect(throttledLines[0]).toContain('"failures":5');
  }, 30_000);

  test("neither the token nor a session id ever reaches the log", async () => {
    const stack = await start();
    const cookie = await login(stack);
    await call(stack, "POST", "/admin/login", { ...form, ...origin(stack) }, "token=not-the-token-but-close");
    await call(stack, "GET", "/admin/api/state", bearer(stack));
    await call(stack, "GET", "/admin/api/state", { authorization: `Bearer ${stack.adminToken!}-wrong` });
    await call(stack, "POST", "/admin/api/dead/retry", { cookie });
    await call(stack, "POST", "/admin/logout", { cookie, ...origin(stack) });
    const logs = stack.logs();
    expect(logs).toContain("dashboard login");
    expect(logs).toContain("dashboard login refused");
    expect(logs).not.toContain(stack.adminToken!);
    expect(logs).not.toContain(cookie.split("=")[1]!);
    expect(logs).not.toContain("not-the-token-but-close");
  }, 30_000);
});

describe("dashboard JSON API", () => {
  test("lanes, recent sends with event ids, dead letters with why, plugins, throughput", async () => {
    const stack = await start({
      plugins: [
        { definition: definePlugin({ name: "fine", setup: () => {} }) },
        {
          definition: definePlugin({
            name: "broken",
            config: z.object({ room: z.string() }),
            setup: () => {},
          }),
        },
      ],
    });
    const { hs } = stack;
    const sent = await Promise.all([stack.say(ROOM, "one"), stack.say(ROOM, "two")]);
    const deliveries = await Promise.all(sent.map((s) => s.delivered()));
    hs.refuseRoom(BANNED);
    const dead = await stack.say(BANNED, "nobody hears this");
    await expect(dead.delivered()).rejects.toMatchObject({ errcode: "M_FORBIDDEN" });
    // A room whose sends keep failing (500) stays pending: a lane with depth and age.
    hs.setFaults({ rate500: 1, match: (path) => path.includes(encodeURIComponent(SLOW)) });
    await stack.say(SLOW, "stuck 1");
    await stack.say(SLOW, "stuck 2");

    const s = await state(stack);
    expect(s.totals).toEqual({ pending: 2, sent: 2, dead: 1 });
    expect(s.counters).toMatchObject({ sent: 2, dead: 1 });
    expect(s.lanes.count).toBe(1);
    expect(s.lanes.shown).toEqual([
      {
        lane: `room:${SLOW}`,
        pending: 2,
        oldestCreatedAt: expect.any(Number),
        oldestAgeMs: expect.any(Number),
      },
    ]);
    expect(s.lanes.shown[0]!.oldestAgeMs).toBeGreaterThanOrEqual(0);
    const stored = hs.roomEvents(ROOM);
    expect(s.recent.map((r) => r.eventId).sort()).toEqual(stored.map((e) => e.eventId).sort());
    expect(s.recent.map((r) => r.txnId).sort()).toEqual(deliveries.map((d) => d.txnId).sort());
    expect(s.recent[0]).toMatchObject({ lane: `room:${ROOM}`, kind: "send", attempts: 1 });
    expect(s.dead).toEqual([
      expect.objectContaining({
        txnId: dead.txnId,
        lane: `room:${BANNED}`,
        errcode: "M_FORBIDDEN",
        status: 403,
        reason: expect.stringContaining("not in the room"),
        attempts: 1,
      }),
    ]);
    expect(JSON.stringify(s)).not.toContain("nobody hears this"); // no message content in the API
    expect(s.plugins).toEqual([
      { name: "fine", status: "running" },
      { name: "broken", status: "failed", error: expect.stringContaining("invalid config") },
    ]);
    expect(s.throughput.sent).toHaveLength(60);
    expect(s.throughput.sent.reduce((a, b) => a + b, 0)).toBe(2);
    expect(s.throughput.dead.reduce((a, b) => a + b, 0)).toBe(1);
    expect(s.about).toMatchObject({
      botUserId: "@bot:fake.test",
      homeserver: hs.url,
      ping: { ok: true },
      startedAt: expect.any(Number),
    });
  }, 30_000);

  test("inbound: counts by state, the newest rejected and dead items with why; no item content", async () => {
    // Reasons and ids come from the network: served as they are, in JSON, never as HTML.
    const html = '<img src=x onerror="alert(1)">';
    const stack = await start({
      plugins: [
        {
          definition: definePlugin({
            name: "fragile",
            setup(bot) {
              bot.on("m.room.message", (ctx) => {
                if (ctx.event.content.body === "crash") throw new Error(`upstream said ${html}`);
              });
            },
          }),
        },
      ],
      config: { dispatcher: { maxAttempts: 1 } },
    });
    const message = (id: string, body: string) => ({
      type: "m.room.message",
      room_id: ROOM,
      sender: "@alice:fake.test",
      event_id: id,
      origin_server_ts: Date.now(),
      content: { msgtype: "m.text", body },
    });
    const { sender: _, ...noSender } = message(`$no-sender${html}`, "private words 1");
    const pushed = await stack.hs.pushTransaction("t1", {
      events: [message("$fine", "private words 2"), noSender, message("$crash", "crash")],
    });
    expect(pushed.status).toBe(200);
    const inbound = async () =>
      (await call(stack, "GET", "/admin/api/inbound", bearer(stack))).json as unknown as InboundPanel;
    await stack.hs.waitFor(async () => (await inbound()).totals.dead === 1, 10_000, "the dead item");
    await stack.courier.dispatcher.onIdle();

    const panel = await inbound();
    expect(panel.totals).toEqual({ pending: 0, done: 1, dead: 1, rejected: 1 });
    expect(panel.rejected).toEqual([
      {
        seq: expect.any(Number),
        txnId: "t1",
        kind: "event",
        lane: `room:${ROOM}`,
        eventId: `$no-sender${html}`,
        attempts: 0,
        receivedAt: expect.any(Number),
        settledAt: expect.any(Number),
        reason: "events[1] lacks `sender` (a non-empty string)",
      },
    ]);
    expect(panel.dead).toEqual([
      expect.objectContaining({
        txnId: "t1",
        lane: `room:${ROOM}`,
        eventId: "$crash",
        reason: expect.stringContaining(`upstream said ${html}`),
      }),
    ]);
    expect(panel.dead[0]!.attempts).toBeGreaterThanOrEqual(1);
    expect(panel.dead[0]!.seq).toBeGreaterThan(panel.rejected[0]!.seq);
    expect(JSON.stringify(panel)).not.toContain("private words"); // metadata only, never the item
    // The page's poll carries the same panel.
    expect((await state(stack)).inbound).toEqual(panel);
    const res = await call(stack, "GET", "/admin/api/inbound", bearer(stack));
    expect(res.headers["content-type"]).toMatch(/^application\/json/);
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    // Read-only: nothing but GET.
    expect((await call(stack, "POST", "/admin/api/inbound", bearer(stack))).status).toBe(404);
  }, 30_000);

  test("retry puts a dead letter back and sends it at once (the outbox picks it up before the answer)", async () => {
    const stack = await start();
    const { hs } = stack;
    hs.refuseRoom(BANNED);
    const dead = await stack.say(BANNED, "let me in");
    await expect(dead.delivered()).rejects.toMatchObject({ errcode: "M_FORBIDDEN" });
    expect(hs.roomEvents(BANNED)).toEqual([]);

    // Not a dead letter (yet): nothing to retry.
    expect(await call(stack, "POST", "/admin/api/dead/no-such-txn/retry", bearer(stack))).toMatchObject({
      status: 404,
      json: { errcode: "M_NOT_FOUND" },
    });
    hs.allowRoom(BANNED);
    const rescan = jest.spyOn(stack.courier.outbox, "rescan");
    const cookie = await login(stack);
    const res = await call(stack, "POST", `/admin/api/dead/${encodeURIComponent(dead.txnId)}/retry`, {
      cookie,
      ...origin(stack),
      "content-type": "application/json",
    });
    expect(res).toMatchObject({ status: 200, json: { requeued: 1 } });
    expect(rescan).toHaveBeenCalled(); // before the answer, so the send starts now
    await hs.waitFor(() => hs.roomEvents(BANNED).length === 1, 10_000, "the retried message");
    const [event] = hs.roomEvents(BANNED);
    expect(event).toMatchObject({ txnId: dead.txnId, content: { body: "let me in" } });
    await stack.courier.outbox.onIdle();
    const s = await state(stack);
    expect(s.dead).toEqual([]);
    expect(s.recent).toEqual([expect.objectContaining({ txnId: dead.txnId, eventId: event!.eventId })]);
    // The same txnId again: it is sent, no longer dead.
    expect((await call(stack, "POST", `/admin/api/dead/${dead.txnId}/retry`, bearer(stack))).status).toBe(
      404,
    );
  }, 30_000);

  test("drop takes held requests out of the running service's queue: they are never sent; same auth and CSRF rules as retry", async () => {
    const stack = await start();
    const { hs } = stack;
    const ROOM = "!held:fake.test";
    hs.pause();
    const sent = [];
    for (let i = 0; i < 4; i++) sent.push(await stack.say(ROOM, `m${i}`));
    await hs.waitFor(() => hs.pausedRequests === 1, 10_000, "m0 on the wire");
    const path = `/admin/api/pending/${encodeURIComponent(sent[1]!.txnId)}/drop`;
    const batch = "/admin/api/pending/drop";
    const json = { "content-type": "application/json" };
    const body = JSON.stringify({ txnIds: [sent[2]!.txnId, "no-such-txn"] });
    // Refused without credentials, with the cookie from another origin, and for a bad body.
    expect((await call(stack, "POST", path)).status).toBe(401);
    expect((await call(stack, "POST", batch, json, body)).status).toBe(401);
    const cookie = await login(stack);
    const evil = { cookie, origin: "http://evil.example" };
    expect((await call(stack, "POST", path, evil)).json).toMatchObject({ errcode: "M_FORBIDDEN" });
    expect((await call(stack, "POST", batch, { ...evil, ...json }, body)).status).toBe(403);
    expect((await call(stack, "POST", batch, { ...bearer(stack), ...json }, "{}")).status).toBe(400);
    expect((await call(stack, "POST", "/admin/api/pending/no-such-txn/drop", bearer(stack))).status).toBe(
      404,
    );
    expect(await stack.courier.outbox.stats()).toMatchObject({ totals: { pending: 4 } });

    // One by the page (cookie, own origin), two at once by a script (bearer): the unknown one is not counted.
    expect(await call(stack, "POST", path, { cookie, ...origin(stack) })).toMatchObject({
      status: 200,
      json: { dropped: 1 },
    });
    expect(await call(stack, "POST", batch, { ...bearer(stack), ...json }, body)).toMatchObject({
      status: 200,
      json: { dropped: 1 },
    });
    await expect(sent[1]!.delivered()).rejects.toMatchObject({ errcode: "COURIER_DROPPED" });
    hs.resume();
    await expect(sent[3]!.delivered()).resolves.toBeDefined();
    await stack.courier.outbox.onIdle();
    expect(hs.roomEvents(ROOM).map((e) => e.content.body)).toEqual(["m0", "m3"]);
    expect((await call(stack, "POST", path, bearer(stack))).status).toBe(404); // already dropped
    expect(stack.logs()).toContain("requests dropped by an operator");
  }, 30_000);
});
