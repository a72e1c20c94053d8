import { parseTransaction } from "../../../src/inbound/parseTransaction.ts";

const parse = (body: unknown, txnId = "1") =>
  parseTransaction(Buffer.from(typeof body === "string" ? body : JSON.stringify(body)), txnId);
const ev = (id: string, extra: object = {}) => ({
  event_id: id,
  room_id: "!r:x",
  sender: "@u:x",
  type: "m.room.message",
  content: { body: "hi" },
  ...extra,
});
const accepted = (result: ReturnType<typeof parse>) => {
  if (!result.ok) throw new Error(result.detail);
  return result.items;
};

describe("parseTransaction", () => {
  test("orders items: events, ephemeral, to-device, device lists, OTK counts", () => {
    const typing = { type: "m.typing", room_id: "!r:x", content: { user_ids: [] } };
    const presence = { type: "m.presence", sender: "@u:x", content: {} };
    const result = parse({
      "org.matrix.msc3202.device_unused_fallback_key_types": { "@u:x": { D: ["signed_curve25519"] } },
      "org.matrix.msc3202.device_one_time_keys_count": { "@u:x": { D: { signed_curve25519: 5 } } },
      "org.matrix.msc3202.device_lists": { changed: ["@u:x"], left: [] },
      "de.sorunome.msc2409.to_device": [{ type: "t2", to_user_id: "@b:x", sender: "@u:x", content: {} }],
      to_device: [{ type: "t1", to_user_id: "@a:x", sender: "@u:x", content: {} }],
      "de.sorunome.msc2409.ephemeral": [typing, presence],
      ephemeral: [typing],
      events: [ev("$1")],
      unknown_key: 42,
    });
    if (!result.ok) throw new Error(result.detail);
    expect(result.items.every((i) => i.rejected === undefined)).toBe(true);
    // The typing notice under both spellings is one item to the journal: one key.
    const once = result.items.filter((item, i) => result.items.findIndex((o) => o.key === item.key) === i);
    expect(once.map((i) => [i.kind, i.lane, i.eventId])).toEqual([
      ["event", "room:!r:x", "$1"],
      ["ephemeral", "ephemeral:!r:x", undefined],
      ["ephemeral", "ephemeral:global", undefined],
      ["toDevice", "todevice:@a:x", undefined],
      ["toDevice", "todevice:@b:x", undefined],
      ["deviceLists", "e2ee", undefined],
      ["otkCounts", "e2ee", undefined],
      ["otkCounts", "e2ee", undefined],
    ]);
    expect(JSON.parse(once[1]!.json)).toEqual(typing);
    expect(Object.keys(JSON.parse(once[6]!.json))).toEqual(["org.matrix.msc3202.device_one_time_keys_count"]);
  });

  test("the same item under both spellings gets one key; repeats within one list get their own", () => {
    const lists = { changed: ["@u:x"], left: [] };
    const msg = { type: "t", sender: "@u:x", to_user_id: "@a:x", content: {} };
    const items = accepted(
      parse({
        events: [],
        to_device: [msg, msg],
        "de.sorunome.msc2409.to_device": [msg],
        device_lists: lists,
        "org.matrix.msc3202.device_lists": lists,
      }),
    );
    const keys = items.map((i) => i.key);
    expect(keys).toHaveLength(5);
    expect(new Set(keys).size).toBe(3);
    expect(keys[0]).not.toBe(keys[1]);
    expect(keys[2]).toBe(keys[0]);
    expect(keys[4]).toBe(keys[3]);
  });

  test("a room event is keyed by its event id, whatever else the retry changed", () => {
    const first = accepted(parse({ events: [ev("$1", { unsigned: { age: 10 } })] }, "7"));
    const retry = accepted(
      parse(`{ "events" : [ ${JSON.stringify(ev("$1", { unsigned: { age: 2010 } }))} ] }`, "7"),
    );
    expect(first[0]!.key).toBe("event:$1");
    expect(retry[0]!.key).toBe("event:$1");
    expect(accepted(parse({ events: [ev("$1")] }, "8"))[0]!.key).toBe("event:$1");
  });

  test("items without an id: the key leaves out what the homeserver recomputes, and holds the txnId", () => {
    const presence = (ago: number, order: "a" | "b") => ({
      type: "m.presence",
      sender: "@u:x",
      content:
        order === "a"
          ? { presence: "online", last_active_ago: ago, currently_active: true }
          : { currently_active: true, last_active_ago: ago, presence: "online" },
      unsigned: { age: ago },
    });
    const keyOf = (body: object, txnId = "1") => accepted(parse(body, txnId))[0]!.key;
    expect(keyOf({ ephemeral: [presence(5, "a")] })).toBe(keyOf({ ephemeral: [presence(2005, "b")] }));
    expect(keyOf({ ephemeral: [presence(5, "a")] })).not.toBe(keyOf({ ephemeral: [presence(5, "a")] }, "2"));
    const typing = (ids: string[]) => ({ type: "m.typing", room_id: "!r:x", content: { user_ids: ids } });
    expect(keyOf({ ephemeral: [typing(["@a:x"])] })).not.toBe(keyOf({ ephemeral: [typing(["@b:x"])] }));
    const toDevice = (n: number) => ({ type: "t", sender: "@u:x", to_user_id: "@a:x", content: { n } });
    expect(keyOf({ to_device: [toDevice(1)] })).not.toBe(keyOf({ to_device: [toDevice(2)] }));
  });

  test("malformed items are rejected one by one, with their reasons; the good items beside them are kept", () => {
    const items = accepted(
      parse({
        events: [
          ev("$1"),
          ev("$2", { content: undefined }),
          { room_id: "!r:x", sender: "@u:x", type: "m.room.message", content: {} },
          ev("$3", { content: "text", sender: 5 }),
          7,
          ev("$4"),
        ],
        to_device: [null, { type: "t", sender: "@u:x", to_user_id: "@a:x", content: {} }, { type: "t" }],
        ephemeral: { not: "a list" },
        device_lists: [],
      }),
    );
    expect(items.map((i) => [i.eventId ?? i.kind, i.rejected])).toEqual([
      ["$1", undefined],
      ["$2", "events[1] has no `content` object"],
      ["event", "events[2] lacks `event_id` (a non-empty string)"],
      ["$3", "events[3] lacks `sender` (a non-empty string) and has no `content` object"],
      ["event", "`events[4]` must be an object, got a number"],
      ["$4", undefined],
      ["ephemeral", "`ephemeral` must be an array, got an object"],
      ["toDevice", "`to_device[0]` must be an object, got null"],
      ["toDevice", undefined],
      [
        "toDevice",
        "to_device[2] lacks `sender`, `to_user_id` (a non-empty string) and has no `content` object",
      ],
      ["deviceLists", "`device_lists` must be an object, got an array"],
    ]);
    // Two events without an id never share a key (their replies would collapse onto one).
    const idless = accepted(parse({ events: [{ n: 1 }, { n: 2 }, { n: 1 }] })).map((i) => i.key);
    expect(new Set(idless).size).toBe(3);
  });

  test("a missing `events` is an empty list", () => {
    expect(parse({})).toEqual({ ok: true, items: [] });
  });

  test("a part that is null is absent (Go homeservers write empty lists as null)", () => {
    const body = { events: null, ephemeral: null, to_device: null, device_lists: null };
    expect(parse({ ...body, "org.matrix.msc3202.device_one_time_keys_count": null })).toEqual({
      ok: true,
      items: [],
    });
  });

  test("a body that is not UTF-8 is refused, not journaled with replacement characters", () => {
    const bytes = Buffer.concat([
      Buffer.from('{"events":[{"body":"'),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('"}]}'),
    ]);
    expect(parseTransaction(bytes, "1")).toEqual({
      ok: false,
      kind: "notJson",
      detail: "the body is not valid UTF-8",
    });
  });

  test("a value nested too deeply to be written back is refused, not thrown", () => {
    const deep = "[".repeat(100_000) + "]".repeat(100_000);
    expect(parse(`{"events":[{"content":${deep}}]}`)).toMatchObject({ ok: false, kind: "badJson" });
  });

  test.each([
    ["", "notJson"],
    ["{", "notJson"],
    ["[]", "badJson"],
    ["null", "badJson"],
    ['"text"', "badJson"],
  ])("refuses %j as %s", (body, kind) => {
    expect(parse(body)).toMatchObject({ ok: false, kind });
  });
});
