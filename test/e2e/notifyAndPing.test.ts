// The notify and ping plugins against a real Synapse: a webhook POST becomes one notice in the
// room (a retried delivery too), and `!ping` in a room is answered with the delivery time.
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import yaml from "js-yaml";
import { request } from "undici";
import { E2eStack, eventually, type CourierProcess, type User } from "./support/E2eStack.ts";

const SECRET = `notify-${randomBytes(16).toString("hex")}`;

describe("notify and ping with a real Synapse", () => {
  let stack: E2eStack;
  let courier: CourierProcess;
  let alice: User;
  let roomId: string;

  const fromBot = async () =>
    (await stack.messages(alice.accessToken, roomId)).filter((m) => m.sender === stack.botUserId);

  beforeAll(async () => {
    stack = await E2eStack.start();
    courier = await stack.startCourier();
    alice = await stack.user("alice");
    roomId = await stack.roomWithBot(alice);
    // notify names its room in the config: restart with it, like an operator would.
    await courier.kill("SIGTERM");
    const config = yaml.load(readFileSync(stack.configPath, "utf8")) as { plugins: unknown[] };
    config.plugins = [{ name: "ping" }, { name: "notify", config: { room: roomId, secret: SECRET } }];
    writeFileSync(stack.configPath, yaml.dump(config), { mode: 0o600 });
    courier = await stack.startCourier();
  }, 180_000);
  afterAll(async () => {
    await courier?.kill("SIGTERM");
    await stack?.stop();
  }, 30_000);

  const post = (path: string, body: object, headers: Record<string, string> = {}) =>
    request(`http://127.0.0.1:${stack.appservicePort}/plugins/notify${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    }).then(async (res) => ({ status: res.statusCode, text: await res.body.text() }));

  test("a webhook POST becomes one notice; the same delivery retried is not posted twice", async () => {
    const auth = { authorization: `Bearer ${SECRET}`, "idempotency-key": "deploy-42" };
    expect((await post("/generic", { title: "deploy", body: "v1.2.3 is live" }, auth)).status).toBe(202);
    // The sender did not see the answer and retries the same delivery.
    expect((await post("/generic", { title: "deploy", body: "v1.2.3 is live" }, auth)).status).toBe(202);
    expect((await post("/generic", { title: "unsigned", body: "no" })).status).toBe(401);
    const notices = await eventually("the notice", 30_000, async () => {
      const found = (await fromBot()).filter((m) => m.content.body === "deploy: v1.2.3 is live");
      return found.length > 0 ? found : undefined;
    });
    expect(notices[0]!.content).toMatchObject({ msgtype: "m.notice" });
    // Then another delivery, once posted: each delivery is journaled before its 202, and the
    // bot's sends to the room leave in order, so a second notice of the retried one (or one of
    // the unsigned) would be before it.
    const markerAuth = { ...auth, "idempotency-key": "marker-1" };
    expect((await post("/generic", { title: "marker", body: "last" }, markerAuth)).status).toBe(202);
    const bodies = await eventually("the marker notice", 30_000, async () => {
      const all = (await fromBot()).map((m) => m.content.body);
      return all.includes("marker: last") ? all : undefined;
    });
    expect(bodies.filter((b) => b === "deploy: v1.2.3 is live")).toHaveLength(1);
    expect(bodies.some((b) => String(b).includes("unsigned"))).toBe(false);
  }, 90_000);

  test("!ping in a room is answered with the delivery time", async () => {
    await stack.say(alice, roomId, "!ping");
    const pong = await eventually("the pong", 30_000, async () =>
      (await fromBot()).find((m) =>
        /^pong \(\d+ ms from the homeserver to courier\)$/.test(String(m.content.body)),
      ),
    );
    expect(pong.content).toMatchObject({ msgtype: "m.notice" });
  }, 60_000);
});
