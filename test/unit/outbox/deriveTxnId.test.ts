import { deriveTxnId, type TxnIdInput } from "../../../src/outbox/deriveTxnId.ts";

const base: TxnIdInput = {
  appserviceId: "courier",
  sender: "@bot:example.org",
  kind: "send",
  target: "!room:example.org\u0000m.room.message",
  cause: "$event1",
  ordinal: 0,
};

describe("deriveTxnId", () => {
  test("is the same in every process and every version: pinned values", () => {
    // A changed derivation would send every request replayed after an upgrade again, under new
    // ids: these values must never change.
    expect(deriveTxnId(base)).toBe("mc1ww0xCCp4mucvMP-A2Z2uXGZc5znNJyxqJhQNd3A.HA8");
    expect(deriveTxnId({ ...base, ordinal: 1 })).toBe("mc1Z0rT.m96.dxl56yxhF0fpWt7gBCR3V4SuqUiRBm7rMY");
  });

  test("is url-safe and at most 64 characters", () => {
    for (let i = 0; i < 500; i++) {
      const id = deriveTxnId({ ...base, cause: `cause-${i}/?#&${"é".repeat(i % 7)}`, ordinal: i });
      expect(id).toMatch(/^[A-Za-z0-9._~-]+$/);
      expect(id.length).toBeLessThanOrEqual(64);
    }
  });

  test("differs when any field differs", () => {
    const variants: TxnIdInput[] = [
      { ...base, appserviceId: "other" },
      { ...base, sender: "@ghost:example.org" },
      { ...base, kind: "sendToDevice" },
      { ...base, kind: "state" },
      { ...base, target: "!other:example.org\u0000m.room.message" },
      { ...base, cause: "$event2" },
      { ...base, ordinal: 1 },
      { ...base, part: 1 },
    ];
    const ids = new Set([deriveTxnId(base), ...variants.map(deriveTxnId)]);
    expect(ids.size).toBe(variants.length + 1);
  });

  test("field boundaries cannot be shifted to collide", () => {
    // Concatenation without structure would make these equal.
    const a = deriveTxnId({ ...base, sender: "@a:b", target: "c" });
    const b = deriveTxnId({ ...base, sender: "@a:bc", target: "" });
    expect(a).not.toBe(b);
  });

  test("no collisions over many causes and ordinals", () => {
    const ids = new Set<string>();
    for (let c = 0; c < 200; c++)
      for (let o = 0; o < 50; o++) ids.add(deriveTxnId({ ...base, cause: `$e${c}`, ordinal: o }));
    expect(ids.size).toBe(200 * 50);
  });

  test("rejects a bad ordinal or part", () => {
    expect(() => deriveTxnId({ ...base, ordinal: -1 })).toThrow(TypeError);
    expect(() => deriveTxnId({ ...base, ordinal: 1.5 })).toThrow(/ordinal/);
    expect(() => deriveTxnId({ ...base, part: -2 })).toThrow(/part/);
  });

  test("stays stable across releases (a changed id would resend everything after an upgrade)", () => {
    expect(deriveTxnId(base)).toMatchInlineSnapshot(`"mc1ww0xCCp4mucvMP-A2Z2uXGZc5znNJyxqJhQNd3A.HA8"`);
  });
});
