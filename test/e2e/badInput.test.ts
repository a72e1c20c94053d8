// Bad input to the appservice endpoint of a running framework: a clear Matrix error for each bad
// request, and nothing lost from the good ones.
import { request } from "undici";
import { E2eStack, eventually, type CourierProcess, type User } from "./support/E2eStack.ts";

describe("bad input to the appservice endpoint", () => {
  let stack: E2eStack;
  let courier: CourierProcess;
  let alice: User;
  let roomId: string;
  let base: string;

  const put = (txnId: string, body: string | Buffer, headers: Record<string, string> = {}) =>
    request(`${base}/_matrix/app/v1/transactions/${txnId}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${stack.hsToken}`, "content-type": "application/json", ...headers },
      body,
    }).then(async (res) => ({
      status: res.statusCode,
      body: (await res.body.json()) as Record<string, unknown>,
    }));

  const echoEvent = (eventId: string, text: string) => ({
    event_id: eventId,
    room_id: roomId,
    sender: alice.userId,
    type: "m.room.message",
    origin_server_ts: Date.now(),
    content: { msgtype: "m.text", body: `!echo ${text}` },
  });
  const botReplies = async () =>
    (await stack.messages(alice.accessToken, roomId))
      .filter((m) => m.sender === stack.botUserId)
      .map((m) => m.content.body);

  beforeAll(async () => {
    stack = await E2eStack.start();
    courier = await stack.startCourier();
    alice = await stack.user("alice");
    base = `http://127.0.0.1:${stack.appservicePort}`;
    roomId = await stack.roomWithBot(alice);
  }, 120_000);
  afterAll(async () => {
    await courier?.kill("SIGTERM");
    await stack?.stop();
  }, 30_000);

  test("missing token 401, wrong token 403, the as_token 403, Basic 403", async () => {
    const body = JSON.stringify({ events: [] });
    expect(await put("auth1", body, { authorization: "" })).toMatchObject({
      status: 401,
      body: { errcode: "M_MISSING_TOKEN" },
    });
    expect(await put("auth2", body, { authorization: "Bearer wrong" })).toMatchObject({
      status: 403,
      body: { errcode: "M_FORBIDDEN" },
    });
    expect(await put("auth3", body, { authorization: `Bearer ${stack.asToken}` })).toMatchObject({
      status: 403,
    });
    expect(await put("auth4", body, { authorization: `Basic ${stack.hsToken}` })).toMatchObject({
      status: 403,
    });
  });

  test("malformed JSON 400 M_NOT_JSON; not an object 400 M_BAD_JSON; a part of the wrong shape is kept as rejected, 200", async () => {
    expect(await put("bad1", "{not json")).toMatchObject({ status: 400, body: { errcode: "M_NOT_JSON" } });
    expect(await put("bad2", JSON.stringify(["events"]))).toMatchObject({
      status: 400,
      body: { errcode: "M_BAD_JSON" },
    });
    // A 400 here would make Synapse resend the transaction forever, everything after it waiting.
    expect(await put("bad3", JSON.stringify({ events: "nope" }))).toEqual({ status: 200, body: {} });
  });

  test("a 16 MB transaction is accepted and its events are dispatched", async () => {
    const padding = "x".repeat(170 * 1024);
    const events: object[] = Array.from({ length: 99 }, (_, i) => ({
      event_id: `$big${i}`,
      room_id: roomId,
      sender: alice.userId,
      type: "org.example.padding",
      origin_server_ts: Date.now(),
      content: { padding },
    }));
    events.push(echoEvent("$big-echo", "after 16 MB"));
    const body = JSON.stringify({ events });
    expect(body.length).toBeGreaterThan(16 * 1024 * 1024);
    expect(await put("big1", body)).toEqual({ status: 200, body: {} });
    await eventually("the echo from the big transaction", 20_000, async () =>
      (await botReplies()).includes("after 16 MB") ? true : undefined,
    );
  }, 60_000);

  test("a replayed txnId with the same body runs nothing twice; with another body it is a new transaction", async () => {
    const first = JSON.stringify({ events: [echoEvent("$replay-1", "replay one")] });
    expect(await put("replay", first)).toEqual({ status: 200, body: {} });
    expect(await put("replay", first)).toEqual({ status: 200, body: {} });
    // Synapse on SQLite can restart its counter: same id, new content, must not be swallowed.
    const second = JSON.stringify({ events: [echoEvent("$replay-2", "replay two")] });
    expect(await put("replay", second)).toEqual({ status: 200, body: {} });
    await eventually("both echoes", 20_000, async () => {
      const replies = await botReplies();
      return replies.includes("replay one") && replies.includes("replay two") ? true : undefined;
    });
    // A later echo in the same room has been answered: a duplicate of the earlier ones, handled
    // in room order, would have been answered before it.
    expect(
      await put("replay-marker", JSON.stringify({ events: [echoEvent("$replay-3", "replay marker")] })),
    ).toEqual({
      status: 200,
      body: {},
    });
    await eventually("the marker's echo", 20_000, async () =>
      (await botReplies()).includes("replay marker") ? true : undefined,
    );
    const replies = await botReplies();
    expect(replies.filter((b) => b === "replay one")).toHaveLength(1);
    expect(replies.filter((b) => b === "replay two")).toHaveLength(1);
  }, 60_000);

  test("no token appears in the framework's log", () => {
    const log = courier.lines.join("\n");
    expect(log.length).toBeGreaterThan(0);
    expect(log).not.toContain(stack.hsToken);
    expect(log).not.toContain(stack.asToken);
  });
});
