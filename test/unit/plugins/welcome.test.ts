import { pluginHarness } from "../../support/pluginHarness.ts";
import welcome from "../../../plugins/welcome/index.ts";

async function setup(config: object) {
  const harness = await pluginHarness();
  expect(await harness.host.load(welcome, config)).toBe(true);
  const member = (room: string, user: string, content: object, prev?: object) =>
    harness.dispatch({
      room_id: room,
      sender: user,
      state_key: user,
      type: "m.room.member",
      content,
      ...(prev ? { unsigned: { prev_content: prev } } : {}),
    });
  return { member, bodies: harness.bodies };
}

describe("welcome plugin", () => {
  test("greets a new member with the template", async () => {
    const { member, bodies } = await setup({ text: "Hi {name} ({user}), welcome to {room}" });
    await member("!r:x", "@ann:x", { membership: "join", displayname: "Ann" });
    expect(await bodies()).toEqual(["Hi Ann (@ann:x), welcome to !r:x"]);
  });

  test("ignores profile changes, leaves, and rooms not listed", async () => {
    const { member, bodies } = await setup({ rooms: ["!only:x"] });
    await member("!only:x", "@ann:x", { membership: "join", displayname: "Ann 2" }, { membership: "join" });
    await member("!only:x", "@bob:x", { membership: "leave" });
    await member("!other:x", "@cid:x", { membership: "join" });
    await member("!only:x", "@dee:x", { membership: "join" }, { membership: "invite" });
    expect(await bodies()).toEqual(["Welcome, @dee:x!"]);
  });

  test("a rejected config disables only this plugin", async () => {
    const { host } = await pluginHarness();
    expect(await host.load(welcome, { text: "" })).toBe(false);
    expect(host.status()[0]).toMatchObject({
      name: "welcome",
      status: "failed",
      error: expect.stringContaining("text"),
    });
  });
});
