import { isUtf8 } from "node:buffer";
import { hash } from "node:crypto";
import type { InboundKind, NewInboundItem } from "./InboundJournal.ts";

/** The outcome of reading a transaction body: its items in journal order, or why it is refused. */
export type ParsedTransaction =
  | { readonly ok: true; readonly items: NewInboundItem[] }
  | { readonly ok: false; readonly kind: "notJson" | "badJson"; readonly detail: string };

/** Each list part of a transaction: the keys it may come under (stable first), and its items' kind. */
const LISTS = [
  { keys: ["ephemeral", "de.sorunome.msc2409.ephemeral"], kind: "ephemeral" },
  { keys: ["to_device", "de.sorunome.msc2409.to_device"], kind: "toDevice" },
] as const;
const DEVICE_LISTS_KEYS = ["device_lists", "org.matrix.msc3202.device_lists"] as const;
const OTK_KEYS = [
  "org.matrix.msc3202.device_one_time_keys_count",
  "org.matrix.msc3202.device_unused_fallback_key_types",
] as const;

/**
 * Splits a transaction body (`PUT /_matrix/app/v1/transactions/{txnId}`) into journal items, in
 * this order: room events (lane `room:<room_id>`), ephemeral events (`ephemeral:<room_id>` or
 * `ephemeral:global`), to-device messages (`todevice:<to_user_id>`), device-list changes and OTK
 * counts (lane `e2ee`). Stable and unstable spellings are both read. Unknown keys are ignored,
 * and so is a part that is `null` (Go homeservers serialise an empty list as `null`). Pure; no I/O.
 *
 * Only a body that cannot be read at all is refused: not UTF-8 (decoding it with replacement
 * characters would journal something never sent), not JSON, not an object, or nested too deeply
 * to be written back as JSON (no homeserver produces it). Anything wrong inside is one item
 * marked `rejected` with its reason: it is journaled and shown to operators, and the good items
 * beside it are handled. Refusing the whole transaction would make the homeserver resend it
 * forever, with everything after it waiting.
 *
 * Each item gets the key the journal deduplicates it by (see `itemKey`). Item `json` is the item
 * as received (`JSON.stringify` of it), except OTK counts, which are wrapped in their key
 * (`{"org.matrix.msc3202.device_one_time_keys_count": {...}}`) so the two kinds stay apart.
 */
export function parseTransaction(body: Buffer, txnId: string): ParsedTransaction {
  if (body.length === 0) return { ok: false, kind: "notJson", detail: "the body is empty" };
  if (!isUtf8(body)) return { ok: false, kind: "notJson", detail: "the body is not valid UTF-8" };
  try {
    return itemsOf(body, txnId);
  } catch (error) {
    // JSON.parse is iterative, JSON.stringify recursive: a deep enough value overflows the stack.
    if (error instanceof RangeError) return bad("The transaction is nested too deeply.");
    throw error;
  }
}

function itemsOf(body: Buffer, txnId: string): ParsedTransaction {
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch (error) {
    return { ok: false, kind: "notJson", detail: (error as Error).message };
  }
  if (!isObject(value)) return bad("The transaction body must be a JSON object.");

  const items: NewInboundItem[] = [];
  const keys = new ItemKeys(txnId);
  const events = value.events ?? [];
  if (!Array.isArray(events)) {
    items.push(rejectedPart("event", "room:unknown", "events", events, "an array", keys));
  } else {
    for (const [i, event] of events.entries()) items.push(eventItem(event, i, keys));
  }

  for (const { keys: spellings, kind } of LISTS) {
    for (const key of spellings) {
      const list = value[key];
      if (list === undefined || list === null) continue;
      const lane = kind === "ephemeral" ? "ephemeral:global" : "todevice:unknown";
      if (!Array.isArray(list)) {
        items.push(rejectedPart(kind, lane, key, list, "an array", keys));
        continue;
      }
      // The same item under both spellings has the same key: the journal keeps it once.
      keys.startList();
      for (const [i, item] of list.entries()) items.push(listItem(kind, key, item, i, keys));
    }
  }

  for (const key of DEVICE_LISTS_KEYS) {
    const lists = value[key];
    if (lists === undefined || lists === null) continue;
    keys.startList();
    if (!isObject(lists)) items.push(rejectedPart("deviceLists", "e2ee", key, lists, "an object", keys));
    else items.push(e2ee("deviceLists", lists, JSON.stringify(lists), keys));
  }

  for (const key of OTK_KEYS) {
    const counts = value[key];
    if (counts === undefined || counts === null) continue;
    if (!isObject(counts)) items.push(rejectedPart("otkCounts", "e2ee", key, counts, "an object", keys));
    else items.push(e2ee("otkCounts", { [key]: counts }, JSON.stringify({ [key]: counts }), keys));
  }

  return { ok: true, items };
}

/** A room event, or why it is rejected: what plugins rely on must be there (see `MatrixEvent`). */
function eventItem(event: unknown, index: number, keys: ItemKeys): NewInboundItem {
  if (!isObject(event)) {
    return rejectedPart("event", "room:unknown", `events[${index}]`, event, "an object", keys);
  }
  const json = JSON.stringify(event);
  const eventId = nonEmpty(event.event_id);
  const roomId = nonEmpty(event.room_id);
  const missing = [
    eventId === undefined && "`event_id`",
    roomId === undefined && "`room_id`",
    nonEmpty(event.type) === undefined && "`type`",
    nonEmpty(event.sender) === undefined && "`sender`",
  ].filter((m) => m !== false);
  const problems = [
    missing.length > 0 && `lacks ${missing.join(", ")} (a non-empty string)`,
    !isObject(event.content) && "has no `content` object",
  ].filter((p) => p !== false);
  const key = eventId === undefined ? keys.fingerprinted("event", event) : `event:${eventId}`;
  return {
    kind: "event",
    lane: `room:${roomId ?? "unknown"}`,
    key,
    eventId,
    json,
    payload: event,
    ...(problems.length > 0 ? { rejected: `events[${index}] ${problems.join(" and ")}` } : {}),
  };
}

function listItem(
  kind: "ephemeral" | "toDevice",
  part: string,
  item: unknown,
  index: number,
  keys: ItemKeys,
): NewInboundItem {
  if (!isObject(item)) {
    const lane = kind === "ephemeral" ? "ephemeral:global" : "todevice:unknown";
    return rejectedPart(kind, lane, `${part}[${index}]`, item, "an object", keys);
  }
  const lane =
    kind === "ephemeral"
      ? `ephemeral:${nonEmpty(item.room_id) ?? "global"}`
      : `todevice:${nonEmpty(item.to_user_id) ?? "unknown"}`;
  const required = kind === "ephemeral" ? ["type"] : ["type", "sender", "to_user_id"];
  const missing = required.filter((field) => nonEmpty(item[field]) === undefined).map((f) => `\`${f}\``);
  const problems = [
    missing.length > 0 && `lacks ${missing.join(", ")} (a non-empty string)`,
    !isObject(item.content) && "has no `content` object",
  ].filter((p) => p !== false);
  return {
    kind,
    lane,
    key: keys.fingerprinted(kind, item),
    eventId: undefined,
    json: JSON.stringify(item),
    payload: item,
    ...(problems.length > 0 ? { rejected: `${part}[${index}] ${problems.join(" and ")}` } : {}),
  };
}

function e2ee(kind: InboundKind, payload: object, json: string, keys: ItemKeys): NewInboundItem {
  return { kind, lane: "e2ee", key: keys.fingerprinted(kind, payload), eventId: undefined, json, payload };
}

/** A part or item of the wrong JSON type: kept, with the reason, under a key of its own. */
function rejectedPart(
  kind: InboundKind,
  lane: string,
  where: string,
  value: unknown,
  expected: "an array" | "an object",
  keys: ItemKeys,
): NewInboundItem {
  return {
    kind,
    lane,
    key: keys.fingerprinted(`bad-${kind}`, value),
    eventId: undefined,
    json: JSON.stringify(value),
    rejected: `\`${where}\` must be ${expected}, got ${jsonType(value)}`,
  };
}

/**
 * Keys of items without an id: the transaction id plus a fingerprint of the item, and which
 * repeat of that fingerprint it is within its list (two identical to-device messages in one list
 * are two messages; the same message under the stable and the unstable spelling is one).
 *
 * The fingerprint leaves out what the homeserver recomputes each time it serialises a
 * transaction: `unsigned` (`age`, from `_serialize` in synapse/appservice/api.py) and presence's
 * `content.last_active_ago` (`now - last_active_ts`, `format_user_presence_state` in
 * synapse/handlers/presence.py). Keys are sorted, so a homeserver that orders them differently
 * on a retry yields the same fingerprint. (Synapse itself resends only room events: its
 * `get_oldest_unsent_txn` rebuilds a retried transaction with empty ephemeral and to-device
 * parts. Other homeservers and proxies may resend them whole.)
 */
class ItemKeys {
  readonly #txnId: string;
  #repeats = new Map<string, number>();

  constructor(txnId: string) {
    this.#txnId = txnId;
  }

  startList(): void {
    this.#repeats = new Map();
  }

  fingerprinted(kind: string, item: unknown): string {
    const digest = hash("sha256", canonicalJson(withoutRecomputed(item)), "base64url").slice(0, 27);
    const repeat = this.#repeats.get(digest) ?? 0;
    this.#repeats.set(digest, repeat + 1);
    return `${kind}:${this.#txnId}:${digest}:${repeat}`;
  }
}

function withoutRecomputed(item: unknown): unknown {
  if (!isObject(item)) return item;
  const { unsigned: _unsigned, ...rest } = item;
  if (rest.type === "m.presence" && isObject(rest.content)) {
    const { last_active_ago: _ago, ...content } = rest.content;
    return { ...rest, content };
  }
  return rest;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (isObject(value)) {
    const entries = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`);
    return `{${entries.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

const bad = (detail: string): ParsedTransaction => ({ ok: false, kind: "badJson", detail });

const nonEmpty = (value: unknown): string | undefined =>
  typeof value === "string" && value.length > 0 ? value : undefined;

const jsonType = (value: unknown): string =>
  value === null
    ? "null"
    : Array.isArray(value)
      ? "an array"
      : typeof value === "object"
        ? "an object"
        : `a ${typeof value}`;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
