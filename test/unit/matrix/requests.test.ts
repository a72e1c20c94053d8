import {
  CLIENT_V3,
  fromJournal,
  masqueradeQuery,
  redactRequest,
  roomSendRequest,
  seg,
  stateRequest,
  toDeviceRequest,
} from "../../../src/matrix/requests.ts";
import type { DeviceId, TxnId } from "../../../src/ids.ts";
import { roomId, userId } from "../../../src/ids.ts";

const room = roomId("!abc/def?x:example.org");
const ghost = userId("@_bridge_al/ice+x:example.org");
const device = "DEV/ICE 1" as DeviceId;
const txn = "t/1?#%" as TxnId;

describe("seg", () => {
  it("encodes every reserved character of a path segment", () => {
    expect(seg("!room:server")).toBe("!room%3Aserver");
    expect(seg("#alias:server")).toBe("%23alias%3Aserver");
    expect(seg("a/b?c#d%e f&g=h+i")).toBe("a%2Fb%3Fc%23d%25e%20f%26g%3Dh%2Bi");
    expect(seg("é")).toBe("%C3%A9");
  });
});

describe("masqueradeQuery", () => {
  it("is empty without a masquerade", () => {
    expect(masqueradeQuery(undefined)).toBe("");
    expect(masqueradeQuery({})).toBe("");
  });

  it("puts user_id, device_id and the MSC3202 device name in a fixed order", () => {
    expect(masqueradeQuery({ userId: ghost, deviceId: device })).toBe(
      "?user_id=%40_bridge_al%2Fice%2Bx%3Aexample.org&device_id=DEV%2FICE%201&org.matrix.msc3202.device_id=DEV%2FICE%201",
    );
    expect(masqueradeQuery({ deviceId: device, userId: ghost })).toBe(
      masqueradeQuery({ userId: ghost, deviceId: device }),
    );
    expect(masqueradeQuery({ userId: ghost })).toBe("?user_id=%40_bridge_al%2Fice%2Bx%3Aexample.org");
  });
});

describe("request builders", () => {
  it("roomSendRequest encodes room, type and txnId and serializes the content", () => {
    const req = roomSendRequest({
      roomId: room,
      eventType: "org.example/odd type#1",
      txnId: txn,
      content: { body: "hi", msgtype: "m.text" },
      as: { userId: ghost },
    });
    expect(req).toEqual({
      method: "PUT",
      path: `${CLIENT_V3}/rooms/!abc%2Fdef%3Fx%3Aexample.org/send/org.example%2Fodd%20type%231/t%2F1%3F%23%25?user_id=%40_bridge_al%2Fice%2Bx%3Aexample.org`,
      body: '{"body":"hi","msgtype":"m.text"}',
      userId: ghost,
    });
  });

  it("the same input always yields the same request", () => {
    const p = {
      roomId: room,
      eventType: "m.room.message",
      txnId: txn,
      content: { a: 1 },
      as: { userId: ghost },
    };
    expect(roomSendRequest(p)).toEqual(roomSendRequest({ ...p }));
  });

  it("toDeviceRequest wraps the messages", () => {
    const req = toDeviceRequest({
      eventType: "m.new_device",
      txnId: txn,
      messages: { [ghost]: { "*": { x: 1 } } },
    });
    expect(req.method).toBe("PUT");
    expect(req.path).toBe(`${CLIENT_V3}/sendToDevice/m.new_device/t%2F1%3F%23%25`);
    expect(JSON.parse(req.body!)).toEqual({ messages: { [ghost]: { "*": { x: 1 } } } });
  });

  it("stateRequest encodes an empty and an odd state key", () => {
    expect(stateRequest({ roomId: room, eventType: "m.room.name", stateKey: "", content: {} }).path).toBe(
      `${CLIENT_V3}/rooms/!abc%2Fdef%3Fx%3Aexample.org/state/m.room.name/`,
    );
    expect(
      stateRequest({ roomId: room, eventType: "m.room.member", stateKey: ghost, content: {} }).path,
    ).toBe(
      `${CLIENT_V3}/rooms/!abc%2Fdef%3Fx%3Aexample.org/state/m.room.member/%40_bridge_al%2Fice%2Bx%3Aexample.org`,
    );
  });

  it("redactRequest encodes the event id and sends the reason only when given", () => {
    const req = redactRequest({ roomId: room, eventId: "$ev/1+2", txnId: txn, as: { deviceId: device } });
    expect(req.path).toBe(
      `${CLIENT_V3}/rooms/!abc%2Fdef%3Fx%3Aexample.org/redact/%24ev%2F1%2B2/t%2F1%3F%23%25?device_id=DEV%2FICE%201&org.matrix.msc3202.device_id=DEV%2FICE%201`,
    );
    expect(req.body).toBe("{}");
    expect(redactRequest({ roomId: room, eventId: "$e", txnId: txn, reason: "spam" }).body).toBe(
      '{"reason":"spam"}',
    );
  });
});

describe("the masquerade as fields of the request", () => {
  const as = { userId: ghost, deviceId: device };
  const built = [
    roomSendRequest({ roomId: room, eventType: "m.room.message", txnId: txn, content: {}, as }),
    stateRequest({ roomId: room, eventType: "m.room.name", stateKey: "", content: {}, as }),
    redactRequest({ roomId: room, eventId: "$e", txnId: txn, as }),
    toDeviceRequest({ eventType: "m.x", txnId: txn, messages: {}, as }),
  ];

  it("every builder sets userId and deviceId beside the query it writes", () => {
    for (const req of built) {
      expect([req.userId, req.deviceId]).toEqual([ghost, device]);
      expect(req.path.endsWith(masqueradeQuery(as))).toBe(true);
    }
    const plain = roomSendRequest({ roomId: room, eventType: "m.room.message", txnId: txn, content: {} });
    expect([plain.userId, plain.deviceId]).toEqual([undefined, undefined]);
  });

  it("fromJournal gives a request kept as method, path and body its fields back, path unchanged", () => {
    for (const req of [
      ...built,
      redactRequest({ roomId: room, eventId: "$e", txnId: txn, as: { deviceId: device } }),
      redactRequest({ roomId: room, eventId: "$e", txnId: txn, as: { userId: ghost } }),
    ]) {
      const journaled = { method: req.method, path: req.path, body: req.body };
      expect(fromJournal(journaled)).toEqual(req);
    }
    const bare = { method: "PUT" as const, path: `${CLIENT_V3}/rooms/x/send/m.room.message/t`, body: "{}" };
    expect(fromJournal(bare)).toBe(bare);
  });
});
