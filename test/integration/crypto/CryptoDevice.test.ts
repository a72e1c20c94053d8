// A device of the framework (CryptoDevice) against a real OlmMachine of a user, over an
// in-memory key server: the encrypt sequence that panics inside the sdk when the room key was
// not shared first (a first message, a session rotated out) is never reached, every room key
// goes to the outbox once per session, and the user decrypts every message.
import "fake-indexeddb/auto";
import {
  DecryptionSettings,
  DeviceLists,
  RoomId,
  TrustRequirement,
} from "@matrix-org/matrix-sdk-crypto-wasm";
import type { DeviceToDevice } from "../../../src/crypto/CryptoDevice.ts";
import { roomId } from "../../../src/ids.ts";
import { MatrixClient } from "../../../src/matrix/MatrixClient.ts";
import { KeyServer, memoryDevice, userMachine } from "../../support/KeyServer.ts";

const ROOM = roomId("!room:x");

describe("CryptoDevice", () => {
  let keys: KeyServer;
  let client: MatrixClient;
  beforeAll(async () => {
    keys = await KeyServer.start();
    client = new MatrixClient({ homeserverUrl: keys.url, accessToken: "as-token" });
  });
  afterAll(async () => {
    await client.close();
    await keys.stop();
  });

  const botDevice = (user: string, journaled: DeviceToDevice[]) => memoryDevice(client, user, journaled);

  test("encrypts a first message and each message after a rotation; the user decrypts them all", async () => {
    const journaled: DeviceToDevice[] = [];
    const bot = await botDevice("@bot:x", journaled);
    const alice = await userMachine(keys, "@alice:x", "ALICE");
    const bodies: string[] = [];
    for (let n = 1; n <= 5; n++) {
      // Rotation every 2 messages: messages 3 and 5 need a new session, shared first.
      const sealed = await bot.encrypt(
        ROOM,
        ["@alice:x", "@bot:x"],
        { rotationPeriodMsgs: 2 },
        "m.room.message",
        {
          msgtype: "m.text",
          body: `message ${n}`,
        },
      );
      const toAlice = journaled
        .splice(0)
        .flatMap((r) => Object.entries(r.messages["@alice:x"] ?? {}).map(([, content]) => ({ r, content })));
      if (toAlice.length > 0) {
        await alice.receiveSyncChanges(
          JSON.stringify(toAlice.map(({ r, content }) => ({ sender: "@bot:x", type: r.eventType, content }))),
          new DeviceLists(),
          new Map(),
          new Set(),
        );
      }
      const event = {
        type: "m.room.encrypted",
        event_id: `$${n}`,
        room_id: ROOM,
        sender: "@bot:x",
        origin_server_ts: Date.now(),
        content: sealed,
      };
      const clear = await alice.decryptRoomEvent(
        JSON.stringify(event),
        new RoomId(ROOM),
        new DecryptionSettings(TrustRequirement.Untrusted),
      );
      bodies.push((JSON.parse(clear.event) as { content: { body: string } }).content.body);
    }
    expect(bodies).toEqual([1, 2, 3, 4, 5].map((n) => `message ${n}`));
    bot.close();
  }, 60_000);

  test("room keys are journaled in the room's lane, once per session, with a cause unique to the device", async () => {
    const journaled: DeviceToDevice[] = [];
    const bot = await botDevice("@bot2:x", journaled);
    await userMachine(keys, "@carol:x", "CAROL");
    const sessions = new Set<string>();
    for (let n = 0; n < 4; n++) {
      const sealed = await bot.encrypt(ROOM, ["@carol:x"], { rotationPeriodMsgs: 2 }, "m.room.message", {
        body: "x",
      });
      sessions.add(sealed.session_id as string);
    }
    const roomKeys = journaled.filter((r) => r.eventType === "m.room.encrypted");
    expect(sessions.size).toBe(2);
    expect(roomKeys).toHaveLength(2); // one per session for carol's one device
    expect(roomKeys.every((r) => r.inRoomLane === ROOM && r.cause.startsWith("e2ee:COURIER:"))).toBe(true);
    expect(new Set(roomKeys.map((r) => r.cause)).size).toBe(2);
    bot.close();
  }, 60_000);
});
