// The inbound side of encryption, with a real OlmMachine as the user over an in-memory key
// server: an encrypted event whose key comes later waits for it (`keyWaitMs`), then is parked
// (the next of its session at once), seen meanwhile by handlers that take `m.room.encrypted`,
// and handled decrypted, once, when the key arrives; an event whose key is there is handled
// decrypted at once.
import "fake-indexeddb/auto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { EncryptionSettings, RoomId, UserId } from "@matrix-org/matrix-sdk-crypto-wasm";
import { pino } from "pino";
import { CourierCrypto } from "../../../src/crypto/CourierCrypto.ts";
import { SqliteCryptoStore } from "../../../src/store/sqlite/SqliteCryptoStore.ts";
import type { DeviceId as OurDeviceId, UserId as OurUserId } from "../../../src/ids.ts";
import type { InboundItem } from "../../../src/inbound/InboundJournal.ts";
import { MatrixClient } from "../../../src/matrix/MatrixClient.ts";
import type { OutboxItem } from "../../../src/outbox/types.ts";
import { KeyServer, serveKeyRequests, userMachine } from "../../support/KeyServer.ts";

const ROOM = "!room:x";
const BOT = "@bot:x" as OurUserId;

describe("CourierCrypto, inbound", () => {
  let keys: KeyServer;
  let client: MatrixClient;
  let dir: string;
  beforeAll(async () => {
    keys = await KeyServer.start();
    client = new MatrixClient({ homeserverUrl: keys.url, accessToken: "as-token" });
    dir = mkdtempSync(path.join(tmpdir(), "courier-crypto-"));
  });
  afterAll(async () => {
    await client.close();
    await keys.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("an event before its key waits, is parked, then handled once, decrypted, when the key comes", async () => {
    // What the framework said of each parked event (pino lines), to see which of them waited.
    const logged: Array<{ msg: string; eventId?: string; waited?: boolean }> = [];
    const seen: Array<Record<string, unknown>> = [];
    const host = {
      dispatch: async (item: InboundItem) => {
        seen.push((item.payload ?? JSON.parse(item.json)) as Record<string, unknown>);
        return [];
      },
    };
    const crypto = new CourierCrypto({
      client,
      enqueue: async (item: OutboxItem) => {
        throw new Error(`nothing is sent in this test (${item.kind})`);
      },
      botUserId: BOT,
      deviceId: "COURIER" as OurDeviceId,
      ghosts: false,
      isOwnUser: (id) => id === BOT,
      ensureDevice: async () => {},
      storeKey: new Uint8Array(32).fill(3),
      restore: async () => {},
      persisted: async () => {},
      parked: new SqliteCryptoStore(path.join(dir, "crypto.sqlite")).parked,
      keyWaitMs: 50,
      log: pino({ level: "info" }, { write: (line: string) => logged.push(JSON.parse(line)) }),
    });
    const runner = crypto.runner(host);
    await crypto.start();

    // The user: her device, an Olm session with the bot's device, a room key shared to it.
    const alice = await userMachine(keys, "@alice:x", "ALICE");
    await alice.updateTrackedUsers([new UserId(BOT)]);
    await serveKeyRequests(keys, alice, "@alice:x\u0000ALICE");
    const claim = await alice.getMissingSessions([new UserId(BOT)]);
    await alice.markRequestAsSent(
      claim!.id,
      claim!.type,
      JSON.stringify(keys.handle("keys/claim", claim!.body, "@alice:x\u0000ALICE")),
    );
    const shares = await alice.shareRoomKey(new RoomId(ROOM), [new UserId(BOT)], new EncryptionSettings());
    for (const r of shares) await alice.markRequestAsSent(r.id, r.type, "{}");
    const event = (n: number, content: object) => ({
      type: "m.room.encrypted",
      event_id: `$e${n}`,
      room_id: ROOM,
      sender: "@alice:x",
      origin_server_ts: 1,
      content,
    });
    const sealed = JSON.parse(
      await alice.encryptRoomEvent(new RoomId(ROOM), "m.room.message", JSON.stringify({ body: "first" })),
    ) as object;
    let seq = 0;
    const item = (
      kind: InboundItem["kind"],
      payload: Record<string, unknown>,
      lane: string,
    ): InboundItem => ({
      seq: ++seq,
      txnId: String(seq),
      kind,
      lane,
      key: `k${seq}`,
      eventId: payload.event_id as string | undefined,
      json: JSON.stringify(payload),
      payload,
      attempts: 1,
    });

    const sealedToo = JSON.parse(
      await alice.encryptRoomEvent(new RoomId(ROOM), "m.room.message", JSON.stringify({ body: "first too" })),
    ) as object;

    // The events first: no key yet. Each is seen as it came (m.room.encrypted), then parked; the
    // second of the session is parked without waiting again.
    await runner.dispatch(item("event", event(1, sealed), `room:${ROOM}`));
    await runner.dispatch(item("event", event(11, sealedToo), `room:${ROOM}`));
    expect(seen.map((e) => e.type)).toEqual(["m.room.encrypted", "m.room.encrypted"]);
    expect(await crypto.parked()).toBe(2);
    expect(logged.filter((l) => l.msg.startsWith("no key yet")).map((l) => [l.eventId, l.waited])).toEqual([
      ["$e1", true],
      ["$e11", false],
    ]);

    // The room key arrives (a to-device message to the bot's device): the parked event is handled.
    const keyMessage = JSON.parse(shares[0]!.body) as { messages: Record<string, Record<string, object>> };
    await runner.dispatch(
      item(
        "toDevice",
        {
          type: shares[0]!.event_type,
          sender: "@alice:x",
          to_user_id: BOT,
          to_device_id: "COURIER",
          content: keyMessage.messages[BOT]!.COURIER!,
        },
        `todevice:${BOT}`,
      ),
    );
    for (let i = 0; i < 100 && (await crypto.parked()) > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await crypto.parked()).toBe(0);
    expect(seen.slice(2)).toEqual([
      expect.objectContaining({
        type: "m.room.message",
        event_id: "$e1",
        content: { body: "first" },
        encryption: expect.objectContaining({ senderDevice: "ALICE", trust: "unverified" }),
      }),
      expect.objectContaining({ type: "m.room.message", event_id: "$e11", content: { body: "first too" } }),
    ]);

    // With the key there, the next event is handled decrypted at once.
    const second = JSON.parse(
      await alice.encryptRoomEvent(new RoomId(ROOM), "m.room.message", JSON.stringify({ body: "second" })),
    ) as object;
    await runner.dispatch(item("event", event(2, second), `room:${ROOM}`));
    expect(seen.at(-1)).toMatchObject({
      type: "m.room.message",
      event_id: "$e2",
      content: { body: "second" },
    });
    expect(seen).toHaveLength(5);
    await crypto.stop();
  }, 60_000);
});
