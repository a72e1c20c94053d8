import {
  CLIENT_V3,
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
