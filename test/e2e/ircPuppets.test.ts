// The IRC bridge with one IRC connection per Matrix user (puppets) against ngircd and Synapse: a
// Matrix user's messages come from their own nick, without the relay prefix, and the bridge does
// not bring its own puppets back into Matrix as ghosts.
import { CHANNEL, IrcStack, ghost } from "./support/ircStack.ts";
import { eventually } from "./support/E2eStack.ts";
import type { IrcTestClient } from "../support/IrcTestClient.ts";

describe("IRC bridge with per-user connections", () => {
  let s: IrcStack;
  let bob: IrcTestClient;

  beforeAll(async () => {
    s = await IrcStack.start({ remoteRate: { perSecond: 20, burst: 5 }, puppets: true });
    bob = await s.ircUser("bob");
    await s.startCourier(bob);
  }, 120_000);
  afterAll(async () => {
    bob?.close();
    await s?.stop();
  }, 30_000);

  test("alice speaks on IRC as alice[m]; her puppet is not bridged back; bob's answer reaches Matrix", async () => {
    await s.stack.say(s.alice, s.roomId, "hello from my own nick");
    await s.stack.call(
      s.alice.accessToken,
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(s.roomId)}/send/m.room.message/me1`,
      { msgtype: "m.emote", body: "waves" },
    );
    await bob.waitFor(
      "alice's puppet to join",
      (l) => l.command === "JOIN" && l.prefix.startsWith("alice[m]!"),
    );
    await bob.waitFor("her emote", (l) => l.command === "PRIVMSG" && l.params[1] === "\x01ACTION waves\x01");
    expect(bob.said(CHANNEL, "alice[m]").map((l) => l.params[1])).toEqual([
      "hello from my own nick",
      "\x01ACTION waves\x01",
    ]);
    expect(bob.said(CHANNEL, "courier")).toEqual([]);

    bob.say(CHANNEL, "hi alice");
    await eventually("bob's line in Matrix", 20_000, async () =>
      (await s.messagesFrom(ghost("bob"))).find((m) => m.content.body === "hi alice"),
    );
    // alice's own lines came back to the relay connection from alice[m]: none became a ghost's.
    const all = await s.stack.messages(s.alice.accessToken, s.roomId);
    expect(all.filter((m) => m.sender.startsWith("@courier_irc_alice"))).toEqual([]);
    const members = await s.stack.call<{ joined: Record<string, unknown> }>(
      s.alice.accessToken,
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(s.roomId)}/joined_members`,
    );
    expect(Object.keys(members.joined).filter((u) => u.startsWith("@courier_irc_alice"))).toEqual([]);
  }, 60_000);
});
