import { hash } from "node:crypto";
import { txnKey } from "../../../src/store/sqlite/txnKey.ts";
import { deriveTxnId } from "../../../src/outbox/deriveTxnId.ts";

const derived = (cause: string) =>
  deriveTxnId({ appserviceId: "as", sender: "@bot:x", kind: "send", target: "!r:x", cause, ordinal: 0 });

describe("txnKey", () => {
  test("a derived txnId's key is the first 64 bits of its own digest", () => {
    for (const cause of ["a", "b", "$event:x", "every:daily:20261129"]) {
      const id = derived(cause);
      const digest = Buffer.from(id.slice(3).replaceAll(".", "_"), "base64url");
      expect(txnKey(id)).toBe(digest.readBigInt64BE(0));
    }
  });

  test("any other id is hashed", () => {
    for (const id of ["custom", "mc1" + "!".repeat(43), "mc1" + "a".repeat(42), "mc1" + "é".repeat(43)]) {
      expect(txnKey(id)).toBe(hash("sha256", id, "buffer").readBigInt64BE(0));
    }
  });

  test("keys of many derived ids are distinct", () => {
    const keys = new Set(Array.from({ length: 20_000 }, (_, i) => txnKey(derived(`c${i}`))));
    expect(keys.size).toBe(20_000);
  });
});
