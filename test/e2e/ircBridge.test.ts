// The IRC bridge against a real IRC server (ngircd) and the real Synapse: lines both ways from
// the right ghost and nick, an edit, /me, formatting, a nick change, a long message split on word
// boundaries, an IRC server restart with nothing lost, and 100 messages at once paced to the
// configured rate without the relay bot being dropped.
import { CHANNEL, IrcStack, ghost } from "./support/ircStack.ts";
import { eventually } from "./support/E2eStack.ts";
import type { IrcTestClient } from "../support/IrcTestClient.ts";
import type { CourierProcess } from "./support/E2eStack.ts";

const RATE = { perSecond: 20, burst: 5 };

describe("IRC bridge against ngircd and Synapse", () => {
  let s: IrcStack;
  let bob: IrcTestClient;
  let courier: CourierProcess;

  beforeAll(async () => {
    s = await IrcStack.start({ remoteRate: RATE });
    bob = await s.ircUser("bob");
    courier = await s.startCourier(bob);
  }, 120_000);
  afterAll(async () => {
    bob?.close();
    await s?.stop();
  }, 30_000);

  const relayed = (client: IrcTestClient) => client.said(CHANNEL, "courier").map((l) => l.params[1] ?? "");

  test("an IRC line reaches the room from its ghost; a Matrix message reaches IRC from the relay nick", async () => {
    bob.say(CHANNEL, "hello from \x02irc\x02");
    const [line] = await eventually("bob's line in Matrix", 20_000, async () => {
      const from = await s.messagesFrom(ghost("bob"));
      return from.length > 0 ? from : undefined;
    });
    expect(line!.content).toEqual({
      msgtype: "m.text",
      body: "hello from irc",
      format: "org.matrix.custom.html",
      formatted_body: "hello from <b>irc</b>",
    });

    await s.stack.say(s.alice, s.roomId, "hi bob");
    await bob.waitFor("alice's reply", (l) => l.command === "PRIVMSG" && l.params[1] === "<alice> hi bob");
    expect(bob.said(CHANNEL, "courier").at(-1)!.prefix.split("!")[0]).toBe("courier");
  }, 60_000);

  test("!irc list and !irc status answer in the room", async () => {
    await s.stack.say(s.alice, s.roomId, "!irc list");
    await s.stack.say(s.alice, s.roomId, "!irc status");
    const bot = s.stack.botUserId;
    const [list, status] = await eventually("both answers", 20_000, async () => {
      const answers = (await s.messagesFrom(bot)).map((m) => String(m.content.body));
      const found = [answers.find((a) => a.includes(" ↔ ")), answers.find((a) => a.includes("portal(s)"))];
      return found.every(Boolean) ? found : undefined;
    });
    expect(list).toBe(`${CHANNEL} ↔ ${s.roomId}`);
    expect(status).toMatch(
      /^1 portal\(s\); waiting: \d+ to irc, \d+ to Matrix\. IRC: connected to 127\.0\.0\.1:\d+ as courier, in #test$/,
    );
  }, 60_000);

  test("a Matrix reply addresses the IRC user it answers; an IRC line addressed to alice mentions her", async () => {
    const [hello] = await s.messagesFrom(ghost("bob"));
    await s.stack.call(
      s.alice.accessToken,
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(s.roomId)}/send/m.room.message/reply1`,
      {
        msgtype: "m.text",
        body: `> <${ghost("bob")}> hello from irc\n\nindeed`,
        "m.relates_to": { "m.in_reply_to": { event_id: hello!.event_id } },
      },
    );
    await bob.waitFor("the reply", (l) => l.command === "PRIVMSG" && l.params[1] === "<alice> bob: indeed");

    bob.say(CHANNEL, "alice: see above");
    const addressed = await eventually("bob's mention", 20_000, async () =>
      (await s.messagesFrom(ghost("bob"))).find((m) => m.content.body === "alice: see above"),
    );
    expect(addressed.content).toMatchObject({
      format: "org.matrix.custom.html",
      formatted_body: `<a href="https://matrix.to/#/${s.alice.userId}">alice</a>: see above`,
      "m.mentions": { user_ids: [s.alice.userId] },
    });
  }, 60_000);

  test("an edit, a /me each way, and a nick change", async () => {
    const sent = await s.stack.call<{ event_id: string }>(
      s.alice.accessToken,
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(s.roomId)}/send/m.room.message/edit1`,
      { msgtype: "m.text", body: "tpyo" },
    );
    await s.stack.call(
      s.alice.accessToken,
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(s.roomId)}/send/m.room.message/edit2`,
      {
        msgtype: "m.text",
        body: "* typo",
        "m.new_content": { msgtype: "m.text", body: "typo" },
        "m.relates_to": { rel_type: "m.replace", event_id: sent.event_id },
      },
    );
    await s.stack.call(
      s.alice.accessToken,
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(s.roomId)}/send/m.room.message/me1`,
      { msgtype: "m.emote", body: "waves" },
    );
    await bob.waitFor(
      "the emote",
      (l) => l.command === "PRIVMSG" && l.params[1] === "\x01ACTION alice waves\x01",
    );
    expect(relayed(bob).slice(-3)).toEqual(["<alice> tpyo", "<alice> * typo", "\x01ACTION alice waves\x01"]);

    bob.say(CHANNEL, "\x01ACTION nods\x01");
    await eventually("bob's emote", 20_000, async () =>
      (await s.messagesFrom(ghost("bob"))).find(
        (m) => m.content.msgtype === "m.emote" && m.content.body === "nods",
      ),
    );

    bob.send("NICK bobby");
    await bob.waitFor("the nick change", (l) => l.command === "NICK" && l.params[0] === "bobby");
    bob.say(CHANNEL, "now bobby");
    const renamed = await eventually("bobby's line", 20_000, async () =>
      (await s.messagesFrom(ghost("bobby"))).find((m) => m.content.body === "now bobby"),
    );
    expect(renamed.content.msgtype).toBe("m.text");
    // The old ghost left the room; the new one is a member.
    const members = await s.stack.call<{ joined: Record<string, unknown> }>(
      s.alice.accessToken,
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(s.roomId)}/joined_members`,
    );
    expect(Object.keys(members.joined)).toContain(ghost("bobby"));
    expect(Object.keys(members.joined)).not.toContain(ghost("bob"));
  }, 60_000);

  test("an IRC operator (+o) becomes a moderator (power level 50), and -o takes it back", async () => {
    const dan = await s.ircUser("dan");
    const level = async () => {
      const levels = await s.stack.call<{ users?: Record<string, number> }>(
        s.alice.accessToken,
        "GET",
        `/_matrix/client/v3/rooms/${encodeURIComponent(s.roomId)}/state/m.room.power_levels/`,
      );
      return levels.users?.[ghost("dan")] ?? 0;
    };
    // bobby opened the channel, so he is its operator.
    bob.send(`MODE ${CHANNEL} +o dan`);
    await eventually("dan's level 50", 20_000, async () => ((await level()) === 50 ? true : undefined));
    bob.send(`MODE ${CHANNEL} -o dan`);
    await eventually("dan's level 0", 20_000, async () => ((await level()) === 0 ? true : undefined));
    dan.close();
  }, 60_000);

  test("a long Matrix message is split at IRC's line limit on word boundaries", async () => {
    const words = Array.from({ length: 200 }, (_, i) => `word${i}`);
    const before = relayed(bob).length;
    await s.stack.say(s.alice, s.roomId, words.join(" "));
    await bob.waitFor(
      "the last part",
      (l) => l.command === "PRIVMSG" && (l.params[1] ?? "").endsWith("word199"),
    );
    const lines = bob.said(CHANNEL, "courier").slice(before);
    const parts = lines.map((l) => l.params[1] ?? "");
    expect(parts.length).toBeGreaterThan(1);
    // Each line as the server relayed it fits IRC's 512 bytes; no word is cut; nothing lost or added.
    for (const l of lines) {
      expect(Buffer.byteLength(`:${l.prefix} PRIVMSG ${CHANNEL} :${l.params[1]}\r\n`)).toBeLessThanOrEqual(
        512,
      );
    }
    expect(
      parts
        .join(" ")
        .replace(/^<alice> /, "")
        .split(" "),
    ).toEqual(words);
  }, 60_000);

  test("100 Matrix messages at once leave at the configured rate and the relay bot is not dropped", async () => {
    const before = relayed(bob).length;
    const connectsBefore = courier.lines.filter((l) => l.includes('"msg":"IRC connected"')).length;
    // As fast as alice's client can send them, one after the other (so their order is defined).
    for (let i = 0; i < 100; i++) await s.stack.say(s.alice, s.roomId, `flood ${i}`);
    await bob.waitFor(
      "the 100th",
      (l) => l.command === "PRIVMSG" && (l.params[1] ?? "").endsWith("flood 99"),
      60_000,
    );
    const lines = bob.said(CHANNEL, "courier").slice(before);
    expect(lines.map((l) => l.params[1])).toEqual(
      Array.from({ length: 100 }, (_, i) => `<alice> flood ${i}`),
    );
    const span = lines.at(-1)!.at - lines[0]!.at;
    // The token bucket lets `burst` leave at once, then one per 1/perSecond s.
    expect(span).toBeGreaterThanOrEqual(((100 - RATE.burst) / RATE.perSecond) * 1000 * 0.9);
    expect(courier.lines.filter((l) => l.includes('"msg":"IRC connected"')).length).toBe(connectsBefore);
    expect(bob.lines.some((l) => l.command === "QUIT" && l.prefix.startsWith("courier!"))).toBe(false);
  }, 90_000);

  test("the IRC server restarts: the bridge reconnects, rejoins, and what Matrix said meanwhile arrives once, in order", async () => {
    // Every earlier message marked sent first (the server answered the PING after it): one still
    // waiting for that answer when the server goes is sent again, by design (plugins/irc/README.md).
    await eventually("nothing waiting to IRC", 20_000, async () =>
      s.storeCounts().toIrc === 0 ? true : undefined,
    );
    s.gate.open = false;
    await s.irc.restart();
    bob.close();
    await courier.waitForLog(/IRC connection lost/, 20_000);
    for (let i = 0; i < 10; i++) await s.stack.say(s.alice, s.roomId, `while away ${i}`);
    // Bob is back in the channel before the bridge may reconnect, so he sees everything it sends.
    const carol = await s.ircUser("carol");
    s.gate.open = true;
    await carol.waitFor(
      "the relay bot to rejoin",
      (l) => l.command === "JOIN" && l.prefix.startsWith("courier!"),
    );
    await carol.waitFor("the last", (l) => l.command === "PRIVMSG" && l.params[1] === "<alice> while away 9");
    expect(relayed(carol)).toEqual(Array.from({ length: 10 }, (_, i) => `<alice> while away ${i}`));
    carol.close();
  }, 90_000);
});
