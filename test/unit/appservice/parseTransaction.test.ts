import { parseTransaction } from "../../../src/appservice/parseTransaction.ts";

const parse = (body: unknown) =>
  parseTransaction(Buffer.from(typeof body === "string" ? body : JSON.stringify(body)));

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
      events: [{ event_id: "$1", room_id: "!r:x", type: "m.room.message" }],
      unknown_key: 42,
    });
    if (!result.ok) throw new Error(result.detail);
    expect(result.items.map((i) => [i.kind, i.lane, i.eventId])).toEqual([
      ["event", "room:!r:x", "$1"],
      ["ephemeral", "ephemeral:!r:x", undefined],
      ["ephemeral", "ephemeral:global", undefined],
      ["toDevice", "todevice:@a:x", undefined],
      ["toDevice", "todevice:@b:x", undefined],
      ["deviceLists", "e2ee", undefined],
      ["otkCounts", "e2ee", undefined],
      ["otkCounts", "e2ee", undefined],
    ]);
    expect(JSON.parse(result.items[1]!.json)).toEqual(typing);
    expect(Object.keys(JSON.parse(result.items[6]!.json))).toEqual([
      "org.matrix.msc3202.device_one_time_keys_count",
    ]);
  });

  test("the same device lists under both spellings is one item", () => {
    const lists = { changed: ["@u:x"], left: [] };
    const result = parse({ events: [], device_lists: lists, "org.matrix.msc3202.device_lists": lists });
    expect(result.ok && result.items.map((i) => i.kind)).toEqual(["deviceLists"]);
  });

  test("repeats within one list are kept (only the second spelling is deduplicated)", () => {
    const msg = { type: "t", to_user_id: "@a:x", content: {} };
    const result = parse({ events: [], to_device: [msg, msg], "de.sorunome.msc2409.to_device": [msg] });
    expect(result.ok && result.items.length).toBe(2);
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
    expect(parseTransaction(bytes)).toEqual({
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
    [{ events: {} }, "badJson"],
    [{ events: [1] }, "badJson"],
    [{ events: [], ephemeral: {} }, "badJson"],
    [{ events: [], to_device: [null] }, "badJson"],
    [{ events: [], device_lists: [] }, "badJson"],
    [{ events: [], "org.matrix.msc3202.device_one_time_keys_count": 3 }, "badJson"],
  ])("refuses %j as %s", (body, kind) => {
    expect(parse(body)).toMatchObject({ ok: false, kind });
  });
});
