// Crash safety of encryption: a user sends 200 encrypted commands into 5 encrypted rooms while
// the framework is killed with SIGKILL at moments picked by a seeded draw and started again.
// The user's independent client (matrix-nio) decrypts every reply: none is undecryptable,
// duplicated or out of order, and no room key reached its device twice for the same session.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { E2eeClient } from "../support/E2eeClient.ts";
import { E2eStack, ENCRYPTION_REGISTRATION, SERVER_NAME, type CourierProcess } from "./support/E2eStack.ts";

const ROOMS = 5;
const PER_ROOM = 40;
const KILLS = 3;
const SEED = Number(process.env.CRASH_SEED ?? 20261205);

describe("encryption through SIGKILLs", () => {
  let stack: E2eStack;
  let courier: CourierProcess;
  let alice: E2eeClient;
  let storeDir: string;
  const rooms: string[] = [];

  beforeAll(async () => {
    stack = await E2eStack.start({
      registration: ENCRYPTION_REGISTRATION,
      config: {
        encryption: { enabled: true },
        logging: { level: process.env.E2EE_DEBUG ? "debug" : "info" },
      },
    });
    courier = await stack.startCourier();
    runs.push(courier);
    await courier.waitForLog(/"msg":"encryption ready"/, 30_000);
    const password = `pw-${randomBytes(8).toString("hex")}`;
    await stack.synapse.registerUser("alice", password, { admin: false });
    storeDir = mkdtempSync(path.join(tmpdir(), "courier-nio-crash-"));
    alice = await E2eeClient.start({
      homeserver: stack.synapse.baseUrl,
      userId: `@alice:${SERVER_NAME}`,
      password,
      storeDir,
    });
  }, 180_000);
  const runs: CourierProcess[] = [];
  afterAll(async () => {
    if (process.env.E2EE_DEBUG) {
      const seen = await Promise.all(
        rooms.map(async (r) =>
          (await alice.messages(r)).map((e) => `${e.sender} ${e.type} ${e.body} u=${e.undecryptable}`),
        ),
      );
      writeFileSync(
        process.env.E2EE_DEBUG,
        `${JSON.stringify(seen, null, 1)}\n${runs.map((c) => c.lines.join("\n")).join("\n=====\n")}`,
      );
      const { cpSync } = await import("node:fs");
      cpSync(stack.dir, "/tmp/crash-stack", { recursive: true });
    }
    await alice?.stop();
    await courier?.kill("SIGTERM");
    await stack?.stop();
    if (storeDir) rmSync(storeDir, { recursive: true, force: true });
  }, 30_000);

  test(`${ROOMS * PER_ROOM} encrypted commands in ${ROOMS} rooms, ${KILLS} SIGKILLs: every reply once, in order, decryptable`, async () => {
    for (let r = 0; r < ROOMS; r++) {
      const roomId = await alice.createRoom({ encrypted: true, invite: [stack.botUserId] });
      await alice.waitMember(roomId, stack.botUserId, "join", 30_000);
      rooms.push(roomId);
    }
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
    let restarts = 0;
    for (let i = 0; i < total; i++) {
      const room = i % ROOMS;
      await alice.sendText(rooms[room]!, `!echo r${room}-${Math.floor(i / ROOMS)}`);
      if (kills.has(i)) {
        await courier.kill("SIGKILL");
        courier = await stack.startCourier();
        runs.push(courier);
        restarts++;
      }
    }
    expect(restarts).toBe(KILLS);
    for (const [r, roomId] of rooms.entries()) {
      await alice.waitFor(roomId, { sender: stack.botUserId, count: PER_ROOM, timeoutMs: 120_000 });
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
