import { hash } from "node:crypto";

/** Values of the base64url alphabet, with deriveTxnId's `.` standing for `_`; -1 elsewhere. */
const DIGIT = new Int8Array(128).fill(-1);
for (const [i, c] of [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-."].entries()) {
  DIGIT[c.charCodeAt(0)] = i;
}

/** What deriveTxnId makes: `mc1` and 43 digits of a SHA-256 digest. */
const PREFIX = "mc1";
const DERIVED_LENGTH = PREFIX.length + 43;

/**
 * The indexed form of a txnId: 64 bits of a hash of it. An id made by deriveTxnId is a digest
 * already, so its first 64 bits are read off instead of hashing it again; any other id is
 * hashed. A collision is detected by the store, never silent. Why and what it saves:
 * docs/decisions/0003-txn-key-from-digest.md.
 */
export function txnKey(txnId: string): bigint {
  if (txnId.length === DERIVED_LENGTH && txnId.startsWith(PREFIX)) {
    // 8 digits (48 bits) and 3 more (18 bits, of which the top 16 are taken).
    let high = 0;
    let low = 0;
    let valid = true;
    for (let i = 0; i < 11; i++) {
      const code = txnId.charCodeAt(PREFIX.length + i);
      const digit = code < 128 ? (DIGIT[code] as number) : -1;
      if (digit < 0) valid = false;
      if (i < 8) high = high * 64 + digit;
      else low = low * 64 + digit;
    }
    if (valid) return BigInt.asIntN(64, (BigInt(high) << 16n) | BigInt(low >> 2));
  }
  return hash("sha256", txnId, "buffer").readBigInt64BE(0);
}
