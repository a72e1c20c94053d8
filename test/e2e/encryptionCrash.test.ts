// Crash safety of encryption: a user sends 200 encrypted commands into 5 encrypted rooms while
// the framework is killed with SIGKILL at moments picked by a seeded draw and started again.
// The user's independent client (matrix-nio) decrypts every reply: none is undecryptable,
// duplicated or out of order, and no room key reached its device twice for the same session.
import { EncryptedStack } from "./support/EncryptedStack.ts";

const ROOMS = 5;
const PER_ROOM = 40;
const KILLS = 3;
const SEED = Number(process.env.CRASH_SEED ?? 20261205);

describe("encryption through SIGKILLs", () => {
  let e2ee: EncryptedStack;

  beforeAll(async () => {
    e2ee = await EncryptedStack.start();
  }, 180_000);
  afterAll(async () => {
    await e2ee?.stop();
  }, 30_000);

  test(`${ROOMS * PER_ROOM} encrypted commands in ${ROOMS} rooms, ${KILLS} SIGKILLs: every reply once, in order, decryptable`, async () => {
    const { alice, stack } = e2ee;
    const rooms: string[] = [];
    for (let r = 0; r < ROOMS; r++) rooms.push(await e2ee.roomWithBot());
    // Kill points: KILLS distinct send counts drawn from the seed (xorshift), in order.
    let state = SEED >>> 0 || 1;
    const draw = () => (
      (state ^= state << 13),
      (state ^= state >>> 17),
      (state ^= state << 5),
      (state >>> 0) / 2 ** 32
    );
    const total = ROOMS * PER_ROOM;
    const kills = new Set<number>();
    while (kills.size < KILLS) kills.add(20 + Math.floor(draw() * (total - 40)));
    // Each room's first command, and so alice's room key for it, one room at a time. Synapse
    // 1.163 was seen (1 run in 25) never to push alice's room key to the appservice when it came
    // beside the bot's own key sharing: device_inbox kept it, the appservice's to-device position
    // went past it, no transaction failed. The framework cannot read its device's inbox instead:
    // `SyncHandler.generate_sync_result` refuses an appservice's own user (NotImplementedError).
    // See docs/encryption.md. What this test is about, the replies through the kills, follows.
    for (let room = 0; room < ROOMS; room++) await e2ee.echo(rooms[room]!, `r${room}-0`);
    let restarts = 0;
    for (let i = ROOMS; i < total; i++) {
      const room = i % ROOMS;
      await alice.sendText(rooms[room]!, `!echo r${room}-${Math.floor(i / ROOMS)}`);
      if (kills.has(i)) {
        await e2ee.restartCourier();
        restarts++;
      }
    }
    expect(restarts).toBe(KILLS);
    for (const [r, roomId] of rooms.entries()) {
      await alice
        .waitFor(roomId, { sender: stack.botUserId, count: PER_ROOM, timeoutMs: 120_000 })
        .catch(async (error: unknown) => {
          // Whom alice's room keys went to tells a key never shared from one never decrypted.
          const sessions = JSON.stringify(await alice.outboundSessions(roomId));
          throw new Error(`${String(error)}\nalice's outbound sessions in ${roomId}: ${sessions}`);
        });
      // The order is the homeserver's (what every client shows); the client's own record follows
      // its syncs, which may bring an event late. Each event as the client decrypted it, by id.
      const decrypted = new Map((await alice.messages(roomId)).map((e) => [e.eventId, e]));
      const served = await stack.call<{ chunk: Array<{ event_id: string; sender: string; type: string }> }>(
        alice.accessToken,
        "GET",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=f&limit=1000`,
      );
      const replies = served.chunk
        .filter((e) => e.sender === stack.botUserId && e.type === "m.room.encrypted")
        .map((e) => decrypted.get(e.event_id));
      expect(replies.filter((e) => !e?.decrypted)).toEqual([]);
      expect(replies.map((e) => e?.body)).toEqual(Array.from({ length: PER_ROOM }, (_, n) => `r${r}-${n}`));
    }
    const keys = (await alice.roomKeyStats()).filter((k) => k.sender === stack.botUserId);
    expect(keys.filter((k) => k.count > 1)).toEqual([]);
    // The figures for the note and docs/encryption.md.
    console.log(JSON.stringify({ seed: SEED, commands: total, kills: restarts, roomKeys: keys.length }));
  }, 420_000);
});
