import { z } from "zod";
import { definePlugin } from "../../../src/plugins/definePlugin.ts";
import type { PluginDefinition, WebhookRequest } from "../../../src/plugins/definePlugin.ts";
import { pluginHarness, type PluginHarness } from "../../support/pluginHarness.ts";

const ROOM = "!hooks:fake.test";
const SECRET = "hooks-secret-0123456789";
const auth = { authorization: `Bearer ${SECRET}` };

let stacks: PluginHarness[] = [];
afterEach(async () => {
  await Promise.all(stacks.map((s) => s.stop()));
  stacks = [];
});
/** The plugin loaded (it must load) on the fake homeserver, its webhooks served. */
const start = async (
  plugin: PluginDefinition,
  config: unknown,
  options: { handlerTimeoutMs?: number } = {},
) => {
  const stack = await pluginHarness({ homeserver: true, ...options });
  stacks.push(stack);
  expect(await stack.host.load(plugin, config)).toBe(true);
  await stack.serve();
  return stack;
};

describe("bot.webhook", () => {
  test("a route without a secret, with a bad path, registered twice, or with a bad replay window makes the plugin fail to load", async () => {
    const harness = await pluginHarness();
    stacks.push(harness);
    const { host } = harness;
    const plugin = (name: string, register: Parameters<typeof definePlugin>[0]["setup"]) =>
      definePlugin({ name, setup: register });
    expect(
      await host.load(
        plugin("open", (bot) => bot.webhook("POST", "/x", () => {})),
        {},
      ),
    ).toBe(false);
    expect(
      await host.load(
        plugin("path", (bot) => bot.webhook("POST", "/:id", () => {}, { secret: SECRET })),
        {},
      ),
    ).toBe(false);
    expect(
      await host.load(
        plugin("twice", (bot) => {
          bot.webhook("POST", "/x", () => {}, { secret: SECRET });
          bot.webhook("POST", "/x", () => {}, { secret: SECRET });
        }),
        {},
      ),
    ).toBe(false);
    expect(
      await host.load(
        plugin("window", (bot) =>
          bot.webhook("POST", "/x", () => {}, { secret: SECRET, scheme: "hmac-sha256", replayWindowMs: 0 }),
        ),
        {},
      ),
    ).toBe(false);
    expect(host.status().map((s) => s.error)).toEqual([
      expect.stringContaining("has no secret"),
      expect.stringContaining("must be literal"),
      expect.stringContaining("registered twice"),
      expect.stringContaining("replayWindowMs must be a positive number of milliseconds, got 0"),
    ]);
  });

  test("the context: request (headers, parsed body, raw bytes), delivery id, config secret; ids given on arrival", async () => {
    const seen: Array<{ request: WebhookRequest; deliveryId: string; sameRequest: boolean }> = [];
    const stack = await start(
      definePlugin({
        name: "spy",
        config: z.object({ secret: z.string() }),
        setup: (bot) => {
          bot.webhook("POST", "/in", (ctx, req) => {
            seen.push({ request: ctx.request, deliveryId: ctx.deliveryId, sameRequest: req === ctx.request });
          });
          bot.webhook("GET", "/status/check", () => {});
        },
      }),
      { secret: SECRET },
    );
    const res = await stack.post("/plugins/spy/in", '{"a":[1,2]}', { ...auth, "x-extra": "yes" });
    expect(res.status).toBe(202);
    const text = await stack.post("/plugins/spy/in", "plain", { ...auth, "content-type": "text/plain" });
    expect(seen).toHaveLength(2);
    expect(seen[0]).toMatchObject({
      deliveryId: res.json.delivery_id,
      sameRequest: true,
      request: { method: "POST", path: "/in", body: { a: [1, 2] }, headers: { "x-extra": "yes" } },
    });
    expect(seen[0]!.request.rawBody.toString()).toBe('{"a":[1,2]}');
    expect(seen[1]!.request.body).toBe("plain");
    expect(text.json.delivery_id).not.toBe(res.json.delivery_id);
    expect((await stack.post("/plugins/spy/status/check", "", auth, "GET")).status).toBe(202);
    expect((await stack.post("/plugins/spy/status/check", "", {}, "GET")).status).toBe(401);
    expect(
      (await stack.post("/plugins/spy/in", "{}", { ...auth, "idempotency-key": "a b" })).json.errcode,
    ).toBe("M_INVALID_PARAM");
    const big = await stack.post("/plugins/spy/in", Buffer.alloc(1024 * 1024 + 1, 0x20), auth);
    expect(big).toMatchObject({ status: 413, json: { errcode: "M_TOO_LARGE" } });
  });

  test("a handler that throws is answered 500 with its delivery id; the retry collapses onto the same txnIds", async () => {
    let calls = 0;
    const stack = await start(
      definePlugin({
        name: "flaky",
        setup: (bot) =>
          bot.webhook(
            "POST",
            "/go",
            async (ctx) => {
              calls++;
              await ctx.send(ROOM, { msgtype: "m.notice", body: "one" });
              if (calls === 1) throw new Error("the second step failed");
              await ctx.send(ROOM, { msgtype: "m.notice", body: "two" });
            },
            { secret: SECRET },
          ),
      }),
      {},
    );
    const first = await stack.post("/plugins/flaky/go", "{}", auth);
    expect(first).toEqual({
      status: 500,
      json: {
        errcode: "M_UNKNOWN",
        error: expect.stringContaining("Send the same delivery again"),
        delivery_id: expect.any(String),
      },
    });
    const retry = await stack.post("/plugins/flaky/go", "{}", {
      ...auth,
      "idempotency-key": String(first.json.delivery_id),
    });
    expect(retry).toEqual({ status: 202, json: { delivery_id: first.json.delivery_id } });
    await stack.outbox.onIdle();
    expect(stack.hs.roomEvents(ROOM).map((e) => e.content.body)).toEqual(["one", "two"]);
  });

  test("a handler that hangs times out (500, its signal aborted); a stopping host answers 503", async () => {
    let aborted = false;
    const stack = await start(
      definePlugin({
        name: "slow",
        setup: (bot) =>
          bot.webhook(
            "POST",
            "/wait",
            (ctx) =>
              new Promise<void>((resolve) =>
                ctx.signal.addEventListener("abort", () => ((aborted = true), resolve())),
              ),
            { secret: SECRET },
          ),
      }),
      {},
      { handlerTimeoutMs: 100 },
    );
    const res = await stack.post("/plugins/slow/wait", "{}", auth);
    expect(res).toMatchObject({ status: 500, json: { errcode: "M_UNKNOWN" } });
    expect(aborted).toBe(true);
    await stack.host.stop();
    expect((await stack.post("/plugins/slow/wait", "{}", auth)).status).toBe(503);
  });
});
