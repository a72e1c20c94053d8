import { hash } from "node:crypto";
import type { TxnId } from "../ids.ts";
import type { OutboxKind } from "../store/OutboxStore.ts";

export interface TxnIdInput {
  /** The appservice's registration id. */
  readonly appserviceId: string;
  /** The mxid the request is sent as (masqueraded ghost or the appservice's own user). */
  readonly sender: string;
  readonly kind: OutboxKind;
  /** Room id + event type for room requests, event type for to-device. */
  readonly target: string;
  /** What caused this request: an inbound event id, a timer slot, a webhook delivery id. */
  readonly cause: string;
  /** Position of this request among the ones the same cause made to the same target. */
  readonly ordinal: number;
  /** Chunk index when one logical request is split (large to-device maps). @default 0 */
  readonly part?: number;
}

const VERSION = "mc1";

/**
 * The transaction id of a request: the same inputs always give the same id, different inputs
 * never share one. A SHA-256 over an unambiguous encoding (a JSON array), base64url with `_`
 * mapped to `.` so the id stays in `[A-Za-z0-9._~-]`; 46 characters.
 */
export function deriveTxnId(input: TxnIdInput): TxnId {
  const { appserviceId, sender, kind, target, cause, ordinal, part = 0 } = input;
  if (!Number.isSafeInteger(ordinal) || ordinal < 0) {
    throw new TypeError(`Expected \`ordinal\` to be a non-negative integer, got ${ordinal}`);
  }
  if (!Number.isSafeInteger(part) || part < 0) {
    throw new TypeError(`Expected \`part\` to be a non-negative integer, got ${part}`);
  }
  const digest = hash(
    "sha256",
    JSON.stringify([VERSION, appserviceId, sender, kind, target, cause, ordinal, part]),
    "base64url",
  );
  return `${VERSION}${digest.replaceAll("_", ".")}` as TxnId;
}
