import notify from "../../../plugins/notify/index.ts";
import { hubSignature } from "../../../src/plugins/webhookAuth.ts";
import type { FakeHomeserver } from "../../support/FakeHomeserver.ts";
import { pluginHarness, type PluginHarness } from "../../support/pluginHarness.ts";

const ROOM = "!alerts:fake.test";
const SECRET = "notify-secret-0123456789";

const push = JSON.stringify({
  ref: "refs/heads/main",
  repository: { full_name: "acme/rocket", html_url: "https://github.com/acme/rocket" },
  pusher: { name: "alice" },
  sender: { login: "alice" },
  commits: [{ id: "0123456789abcdef", message: "Fix <the> thing", url: "https://github.com/c/1" }],
});
const github = (body: string, delivery: string, signature = hubSignature(body, SECRET)) => ({
  "x-github-event": "push",
  "x-github-delivery": delivery,
  "x-hub-signature-256": signature,
});

let stack: PluginHarness & { hs: FakeHomeserver };
beforeEach(async () => {
  stack = await pluginHarness({ homeserver: true });
  expect(await stack.host.load(notify, { room: ROOM, secret: SECRET })).toBe(true);
  await stack.serve();
});
afterEach(() => stack.stop());

const notices = () => stack.hs.roomEvents(ROOM).map((e) => e.content);

describe("notify", () => {
  test("a signed GitHub push becomes one notice; the same delivery again sends nothing new", async () => {
    const first = await stack.post("/plugins/notify/github", push, github(push, "d-1"));
    expect(first).toEqual({ status: 202, json: { delivery_id: "d-1" } });
    await stack.outbox.onIdle();
    expect(notices()).toEqual([
      {
        msgtype: "m.notice",
        body: "alice pushed 1 commit to acme/rocket/main:\n• 0123456 Fix <the> thing",
        format: "org.matrix.custom.html",
        formatted_body:
          'alice pushed 1 commit to acme/rocket/main:<ul><li><a href="https://github.com/c/1">0123456</a> Fix &lt;the&gt; thing</li></ul>',
      },
    ]);

    // GitHub's "redeliver": same X-GitHub-Delivery. Even with the homeserver's cache gone (a restart).
    stack.hs.clearDedupeCache();
    const again = await stack.post("/plugins/notify/github", push, github(push, "d-1"));
    expect(again).toEqual({ status: 202, json: { delivery_id: "d-1" } });
    await stack.outbox.onIdle();
    expect(notices()).toHaveLength(1);

    // The same signed body under another delivery id is a replay (the id is not signed): it is
    // answered as d-1 and sends nothing (test/integration/security/webhookAuth.test.ts).
    const replayed = await stack.post("/plugins/notify/github", push, github(push, "d-2"));
    expect(replayed).toEqual({ status: 202, json: { delivery_id: "d-1" } });
    await stack.outbox.onIdle();
    expect(notices()).toHaveLength(1);
  });

  test("a bad or missing signature is refused and nothing is sent", async () => {
    const bad = await stack.post(
      "/plugins/notify/github",
      push,
      github(push, "d-3", hubSignature(push, "wrong")),
    );
    expect(bad).toEqual({ status: 403, json: { errcode: "M_FORBIDDEN", error: expect.any(String) } });
    const tampered = await stack.post("/plugins/notify/github", `${push} `, github(push, "d-3"));
    expect(tampered.status).toBe(403);
    const { "x-hub-signature-256": _, ...unsigned } = github(push, "d-3");
    const missing = await stack.post("/plugins/notify/github", push, unsigned);
    expect(missing).toEqual({ status: 401, json: { errcode: "M_UNAUTHORIZED", error: expect.any(String) } });
    // The bearer secret is not a GitHub signature.
    const bearer = await stack.post("/plugins/notify/github", push, {
      ...unsigned,
      authorization: `Bearer ${SECRET}`,
    });
    expect(bearer.status).toBe(401);
    await stack.outbox.onIdle();
    expect(notices()).toEqual([]);
    expect(stack.hs.stats.requests).toBe(0);
  });

  test("an Alertmanager payload becomes a formatted notice; its retry collapses", async () => {
    const payload = JSON.stringify({
      version: "4",
      groupKey: '{}:{alertname="InstanceDown"}',
      status: "firing",
      receiver: "matrix",
      groupLabels: { alertname: "InstanceDown" },
      commonLabels: { alertname: "InstanceDown", job: "node" },
      commonAnnotations: {},
      externalURL: "http://alertmanager:9093",
      alerts: ["host1", "host2"].map((instance) => ({
        status: "firing",
        labels: { alertname: "InstanceDown", job: "node", instance },
        annotations: { summary: `${instance} is down` },
        startsAt: "2026-11-23T10:00:00Z",
        fingerprint: `fp-${instance}`,
      })),
    });
    const auth = { authorization: `Bearer ${SECRET}` };
    const first = await stack.post("/plugins/notify/alertmanager", payload, auth);
    expect(first.status).toBe(202);
    expect(first.json.delivery_id).toMatch(/^am-/);
    const retry = await stack.post("/plugins/notify/alertmanager", payload, auth);
    expect(retry.json.delivery_id).toBe(first.json.delivery_id);
    await stack.outbox.onIdle();
    expect(notices()).toHaveLength(1);
    expect(notices()[0]).toMatchObject({
      msgtype: "m.notice",
      body: "[FIRING:2] InstanceDown (job=node)\n• host1 is down (instance=host1)\n• host2 is down (instance=host2)",
    });
    expect(String(notices()[0]!.formatted_body)).toContain("<strong>");

    expect(
      (await stack.post("/plugins/notify/alertmanager", payload, { authorization: "Bearer nope" })).status,
    ).toBe(403);
    expect((await stack.post("/plugins/notify/alertmanager", payload)).status).toBe(401);
  });

  test("the generic route fills the template; bad JSON is 400 M_NOT_JSON; a wrong payload is 400", async () => {
    const auth = { authorization: `Bearer ${SECRET}` };
    const ok = await stack.post(
      "/plugins/notify/generic",
      JSON.stringify({ title: "Backup", body: "<ok>" }),
      {
        ...auth,
        "idempotency-key": "backup-2026-11-23",
      },
    );
    expect(ok).toEqual({ status: 202, json: { delivery_id: "backup-2026-11-23" } });
    const notJson = await stack.post("/plugins/notify/generic", "{oops", auth);
    expect(notJson).toMatchObject({ status: 400, json: { errcode: "M_NOT_JSON" } });
    const notAlerts = await stack.post("/plugins/notify/alertmanager", "{}", auth);
    expect(notAlerts).toMatchObject({ status: 400, json: { errcode: "M_BAD_JSON" } });
    await stack.outbox.onIdle();
    expect(notices()).toEqual([
      expect.objectContaining({ body: "Backup: <ok>", formatted_body: "Backup: &lt;ok&gt;" }),
    ]);
  });

  test("without a secret the plugin is refused (config); unknown routes are JSON 404s", async () => {
    const other = await pluginHarness({ homeserver: true });
    try {
      expect(await other.host.load(notify, { room: ROOM })).toBe(false);
      await other.serve();
      expect(other.host.status()[0]).toMatchObject({
        status: "failed",
        error: expect.stringContaining("secret"),
      });
      const res = await other.post("/plugins/notify/generic", "{}");
      expect(res.status).toBe(404);
      expect(res.json.errcode).toBe("M_UNRECOGNIZED");
    } finally {
      await other.stop();
    }
    expect((await stack.post("/plugins/notify/nope", "{}")).json.errcode).toBe("M_UNRECOGNIZED");
  });
});
