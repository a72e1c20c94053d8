// Row building is pure: these pin what an item becomes (txnId, lane, path), since a replay
// deduplicates only when the same item gives the same bytes in every release.
import { checkSize, fromStore, rowsFor, type RowSettings } from "../../../src/outbox/rows.ts";
import { deriveTxnId } from "../../../src/outbox/deriveTxnId.ts";
import { TO_DEVICE_MESSAGE_ID } from "../../../src/outbox/toDeviceIds.ts";
import type { OutboxItem } from "../../../src/outbox/types.ts";
import type { OutboxRow } from "../../../src/store/OutboxStore.ts";
import { EventTooLargeError, NotOurUserError } from "../../../src/errors.ts";
import { roomId, userId, type DeviceId } from "../../../src/ids.ts";

const bot = userId("@bot:example.org");
const ghost = userId("@ghost_1:example.org");
const room = roomId("!r:example.org");
const device = "COURIER" as DeviceId;
const settings: RowSettings = {
  appserviceId: "as",
  botUserId: bot,
  deviceId: undefined,
  maxEventBytes: 100,
  toDevice: { maxDevices: 2, maxBytes: 65_536 },
  mayActAs: (id) => id.startsWith("@ghost_"),
};
const send = (extra: Partial<OutboxItem> = {}): OutboxItem =>
  ({
    kind: "send",
    roomId: room,
    eventType: "m.room.message",
    content: { body: "hi" },
    cause: "$c",
    ordinal: 2,
    ...extra,
  }) as OutboxItem;

describe("rowsFor", () => {
  test("a room send: txnId from its cause and target, the room's lane, the bot without a query", () => {
    const [row, ...rest] = rowsFor(send(), settings);
    expect(rest).toEqual([]);
    const txnId = deriveTxnId({
      appserviceId: "as",
      sender: bot,
      kind: "send",
      target: `${room}\u0000m.room.message`,
      cause: "$c",
      ordinal: 2,
      part: 0,
    });
    expect(row).toEqual({
      txnId,
      lane: "room:!r:example.org",
      kind: "send",
      sender: bot,
      request: {
        method: "PUT",
        path: `/_matrix/client/v3/rooms/!r%3Aexample.org/send/m.room.message/${txnId}`,
        body: '{"body":"hi"}',
      },
    });
  });

  test("a ghost masquerades with user_id; the outbox's device goes to every sender, the bot too", () => {
    expect(rowsFor(send({ sender: ghost }), settings)[0]?.request).toMatchObject({
      userId: ghost,
      deviceId: undefined,
    });
    const withDevice = { ...settings, deviceId: device };
    for (const sender of [bot, ghost]) {
      const request = rowsFor(send({ sender }), withDevice)[0]?.request;
      expect(request).toMatchObject({ userId: sender, deviceId: device });
      expect(request?.path).toContain(`?user_id=${encodeURIComponent(sender)}&device_id=COURIER`);
    }
    // The item's own device wins.
    const own = "OWN" as DeviceId;
    expect(rowsFor(send({ deviceId: own }), withDevice)[0]?.request.deviceId).toBe(own);
  });

  test("a sender outside the namespaces and oversized content are refused before any row exists", () => {
    expect(() => rowsFor(send({ sender: userId("@stranger:example.org") }), settings)).toThrow(
      NotOurUserError,
    );
    expect(() => rowsFor(send({ content: { body: "x".repeat(100) } }), settings)).toThrow(EventTooLargeError);
    const state: OutboxItem = {
      kind: "state",
      roomId: room,
      eventType: "m.room.topic",
      stateKey: "",
      content: { topic: "x".repeat(100) },
      cause: "$c",
      ordinal: 0,
    };
    expect(() => rowsFor(state, settings)).toThrow(EventTooLargeError);
  });

  test("a large to-device map: one row per chunk, one lane per sender, message ids from the first txnId", () => {
    const item: OutboxItem = {
      kind: "sendToDevice",
      eventType: "m.x",
      messages: { [ghost]: { A: { n: 1 }, B: { n: 2 }, C: { n: 3, [TO_DEVICE_MESSAGE_ID]: "mine" } } },
      sender: ghost,
      cause: "$c",
      ordinal: 0,
    };
    const rows = rowsFor(item, settings);
    expect(rows.map((r) => r.lane)).toEqual([`todevice:${ghost}`, `todevice:${ghost}`]);
    expect(new Set(rows.map((r) => r.txnId)).size).toBe(2);
    const ids = rows.flatMap((r) =>
      Object.values(
        (JSON.parse(r.request.body!) as { messages: Record<string, Record<string, Record<string, string>>> })
          .messages[ghost]!,
      ).map((c) => c[TO_DEVICE_MESSAGE_ID]),
    );
    expect(ids).toEqual([rows[0]?.txnId, rows[0]?.txnId, "mine"]);
  });
});

test("checkSize counts UTF-8 bytes of the body", () => {
  expect(() => checkSize({ method: "PUT", path: "/", body: "é".repeat(50) }, 100, "x")).not.toThrow();
  expect(() => checkSize({ method: "PUT", path: "/", body: "é".repeat(51) }, 100, "x")).toThrow(
    EventTooLargeError,
  );
});

test("fromStore gives rows read back from the store their masquerade again and leaves the rest as they are", () => {
  const [built] = rowsFor(send({ sender: ghost }), { ...settings, deviceId: device });
  const stored = { ...built!, seq: 1 } as unknown as OutboxRow;
  const journaled = {
    ...stored,
    request: { method: "PUT", path: built!.request.path, body: built!.request.body },
  } as OutboxRow;
  const plain = { ...stored, request: { method: "PUT", path: "/no/query", body: "{}" } } as OutboxRow;
  const [again, same, untouched] = fromStore([journaled, stored, plain]);
  expect(again?.request).toEqual(built!.request);
  expect(same).toBe(stored);
  expect(untouched).toBe(plain);
});
