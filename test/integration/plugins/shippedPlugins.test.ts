// The shipped echo, ping and welcome plugins on a whole Courier against the fake homeserver: what
// a user does reaches them through a pushed transaction, and their answers reach the homeserver.
import { startDashboardStack, type DashboardStack } from "../../support/dashboardStack.ts";

const ROOM = "!lobby:fake.test";
let n = 0;
const base = (sender: string) => ({
  room_id: ROOM,
  sender,
  event_id: `$s${++n}`,
  origin_server_ts: Date.now(),
});

describe("shipped plugins: echo, ping, welcome", () => {
  let stack: DashboardStack;
  beforeAll(async () => {
    stack = await startDashboardStack({
      adminToken: null,
      shippedPlugins: [
        { name: "echo", config: { prefix: "> " } },
        { name: "ping" },
        { name: "welcome", config: { text: "Welcome, {name}!" } },
      ],
    });
  });
  afterAll(async () => stack?.stop());

  const bodies = () =>
    stack.hs.roomEvents(ROOM).map((e) => String((e.content as { body?: unknown }).body ?? ""));

  test("one transaction: !echo, !ping and a join each get their answer, once", async () => {
    const transaction = {
      events: [
        {
          ...base("@ann:fake.test"),
          type: "m.room.message",
          content: { msgtype: "m.text", body: "!echo hi there" },
        },
        { ...base("@ann:fake.test"), type: "m.room.message", content: { msgtype: "m.text", body: "!ping" } },
        {
          ...base("@bob:fake.test"),
          type: "m.room.member",
          state_key: "@bob:fake.test",
          content: { membership: "join", displayname: "Bob" },
        },
      ],
    };
    expect((await stack.hs.pushTransaction("shipped-1", transaction)).status).toBe(200);
    await stack.hs.waitFor(() => bodies().length === 3, 10_000, "three answers");
    // The homeserver resends the same transaction (it did not see our 200): nothing new.
    expect((await stack.hs.pushTransaction("shipped-1", transaction)).status).toBe(200);
    // Then a later command in the same room, once answered: anything the resend was handled into
    // ran before it (a room's events run in order) and was sent before its answer (one room
    // lane, in order).
    const marker = {
      ...base("@ann:fake.test"),
      type: "m.room.message",
      content: { msgtype: "m.text", body: "!echo marker" },
    };
    expect((await stack.hs.pushTransaction("shipped-marker", { events: [marker] })).status).toBe(200);
    await stack.hs.waitFor(() => bodies().includes("> marker"), 10_000, "the marker's echo");
    const answers = bodies().slice(0, -1);
    expect(bodies().at(-1)).toBe("> marker");
    expect(answers).toHaveLength(3);
    expect(answers).toContain("> hi there");
    expect(answers).toContain("Welcome, Bob!");
    expect(answers.find((b) => b.startsWith("pong"))).toMatch(
      /^pong \(\d+ ms from the homeserver to courier\)$/,
    );
  });

  test("!echo with no text is answered with its usage (by the framework, from the plugin's usage)", async () => {
    const before = bodies().length;
    const bare = {
      ...base("@ann:fake.test"),
      type: "m.room.message",
      content: { msgtype: "m.text", body: "!echo" },
    };
    expect((await stack.hs.pushTransaction("shipped-bare", { events: [bare] })).status).toBe(200);
    await stack.hs.waitFor(() => bodies().length === before + 1, 10_000, "the answer to !echo");
    expect(bodies().at(-1)).toBe("usage: !echo <text>");
  });

  test("a to-device m.courier.ping is answered with a pong to the sending device", async () => {
    await stack.hs.pushTransaction("shipped-2", {
      "de.sorunome.msc2409.to_device": [
        {
          type: "m.courier.ping",
          sender: "@ann:fake.test",
          to_user_id: "@bot:fake.test",
          to_device_id: "COURIER",
          content: { device_id: "ANNPHONE", nonce: "n-42" },
        },
      ],
    });
    await stack.hs.waitFor(() => stack.hs.toDeviceMessages.length === 1, 10_000, "the pong");
    const [pong] = stack.hs.toDeviceMessages;
    expect(pong).toMatchObject({ type: "m.courier.pong" });
    expect(JSON.stringify(pong)).toContain("ANNPHONE");
    expect(JSON.stringify(pong)).toContain("n-42");
  });
});
