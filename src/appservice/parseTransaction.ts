import { isUtf8 } from "node:buffer";
import type { InboundKind, NewInboundItem } from "../store/InboundStore.ts";

/** The outcome of reading a transaction body: its items in journal order, or why it is refused. */
export type ParsedTransaction =
  | { readonly ok: true; readonly items: NewInboundItem[] }
  | { readonly ok: false; readonly kind: "notJson" | "badJson"; readonly detail: string };

/** Each part of a transaction: the keys it may come under (stable first), and how it becomes items. */
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
 * counts (lane `e2ee`). Stable and unstable spellings are both read; an item present under both
 * (same JSON text) is kept once. Unknown keys are ignored, and so is a part that is `null` (Go
 * homeservers serialise an empty list as `null`). Refused: a body that is not UTF-8 (Matrix JSON
 * is UTF-8; decoding it with replacement characters would journal something never sent), and one
 * nested too deeply to be written back as JSON (no homeserver can produce it). Pure; no I/O.
 *
 * Item `json` is the item as received (`JSON.stringify` of it), except OTK counts, which are
 * wrapped in their key (`{"org.matrix.msc3202.device_one_time_keys_count": {...}}`) so the two
 * kinds of counts stay apart.
 */
export function parseTransaction(body: Buffer): ParsedTransaction {
  if (body.length === 0) return { ok: false, kind: "notJson", detail: "the body is empty" };
  if (!isUtf8(body)) return { ok: false, kind: "notJson", detail: "the body is not valid UTF-8" };
  try {
    return itemsOf(body);
  } catch (error) {
    // JSON.parse is iterative, JSON.stringify recursive: a deep enough value overflows the stack.
    if (error instanceof RangeError) return bad("The transaction is nested too deeply.");
    throw error;
  }
}

function itemsOf(body: Buffer): ParsedTransaction {
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch (error) {
    return { ok: false, kind: "notJson", detail: (error as Error).message };
  }
  if (!isObject(value)) return bad("The transaction body must be a JSON object.");

  const items: NewInboundItem[] = [];
  const events = value.events ?? [];
  if (!Array.isArray(events)) return bad("`events` must be an array.");
  for (const [i, event] of events.entries()) {
    if (!isObject(event)) return bad(`events[${i}] must be an object.`);
    items.push({
      kind: "event",
      lane: `room:${str(event.room_id) ?? "unknown"}`,
      eventId: str(event.event_id),
      json: JSON.stringify(event),
    });
  }

  for (const { keys, kind } of LISTS) {
    const seen = new Set<string>();
    for (const key of keys) {
      const list = value[key];
      if (list === undefined || list === null) continue;
      if (!Array.isArray(list)) return bad(`\`${key}\` must be an array.`);
      const fresh: string[] = [];
      for (const [i, item] of list.entries()) {
        if (!isObject(item)) return bad(`${key}[${i}] must be an object.`);
        const json = JSON.stringify(item);
        // The same item under both spellings is one item; repeats within one list are kept.
        if (seen.has(json)) continue;
        fresh.push(json);
        items.push({ kind, lane: laneOf(kind, item), eventId: undefined, json });
      }
      for (const json of fresh) seen.add(json);
    }
  }

  const seenDeviceLists = new Set<string>();
  for (const key of DEVICE_LISTS_KEYS) {
    const lists = value[key];
    if (lists === undefined || lists === null) continue;
    if (!isObject(lists)) return bad(`\`${key}\` must be an object.`);
    const json = JSON.stringify(lists);
    if (seenDeviceLists.has(json)) continue;
    seenDeviceLists.add(json);
    items.push(e2ee("deviceLists", json));
  }

  for (const key of OTK_KEYS) {
    const counts = value[key];
    if (counts === undefined || counts === null) continue;
    if (!isObject(counts)) return bad(`\`${key}\` must be an object.`);
    items.push(e2ee("otkCounts", JSON.stringify({ [key]: counts })));
  }

  return { ok: true, items };
}

function laneOf(kind: "ephemeral" | "toDevice", item: Record<string, unknown>): string {
  return kind === "ephemeral"
    ? `ephemeral:${str(item.room_id) ?? "global"}`
    : `todevice:${str(item.to_user_id) ?? "unknown"}`;
}

const e2ee = (kind: InboundKind, json: string): NewInboundItem => ({
  kind,
  lane: "e2ee",
  eventId: undefined,
  json,
});

const bad = (detail: string): ParsedTransaction => ({ ok: false, kind: "badJson", detail });

const str = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
