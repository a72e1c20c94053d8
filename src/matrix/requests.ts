import type { DeviceId, RoomId, TxnId, UserId } from "../ids.ts";

/**
 * One Client-Server request, fully formed: `path` is already URL-encoded and carries its query.
 * The outbox stores exactly this and replays it byte for byte (homeservers dedupe on the path).
 */
export interface MatrixRequest {
  readonly method: "GET" | "PUT" | "POST" | "DELETE";
  readonly path: string;
  /** Serialized JSON body, or undefined for none. */
  readonly body?: string | undefined;
}

/** Who the appservice acts as: `user_id` (masquerade) and optionally a device of that user. */
export interface Masquerade {
  readonly userId?: UserId | undefined;
  readonly deviceId?: DeviceId | undefined;
}

export const CLIENT_V3 = "/_matrix/client/v3";

/** Encodes one path segment; `encodeURIComponent` leaves `!*'()` alone, which is safe in a path. */
export const seg = (value: string): string => encodeURIComponent(value);

/**
 * Query string for masquerading. Parameter order is fixed so a replay is byte-identical. The
 * device goes both as the stable `device_id` (Synapse ≥ 1.141) and as MSC3202's unstable name.
 */
export function masqueradeQuery(as: Masquerade | undefined): string {
  if (!as) return "";
  const params: string[] = [];
  if (as.userId) params.push(`user_id=${seg(as.userId)}`);
  if (as.deviceId) {
    params.push(`device_id=${seg(as.deviceId)}`);
    params.push(`org.matrix.msc3202.device_id=${seg(as.deviceId)}`);
  }
  return params.length ? `?${params.join("&")}` : "";
}

/** `PUT /rooms/{roomId}/send/{eventType}/{txnId}` → `{event_id}`. */
export function roomSendRequest(p: {
  roomId: RoomId;
  eventType: string;
  txnId: TxnId;
  content: object;
  as?: Masquerade | undefined;
}): MatrixRequest {
  return {
    method: "PUT",
    path: `${CLIENT_V3}/rooms/${seg(p.roomId)}/send/${seg(p.eventType)}/${seg(p.txnId)}${masqueradeQuery(p.as)}`,
    body: JSON.stringify(p.content),
  };
}

/** `{userId: {deviceId | "*": content}}`. */
export type ToDeviceMessages = Record<string, Record<string, object>>;

/** `PUT /sendToDevice/{eventType}/{txnId}` with `{messages}` → `{}`. */
export function toDeviceRequest(p: {
  eventType: string;
  txnId: TxnId;
  messages: ToDeviceMessages;
  as?: Masquerade | undefined;
}): MatrixRequest {
  return {
    method: "PUT",
    path: `${CLIENT_V3}/sendToDevice/${seg(p.eventType)}/${seg(p.txnId)}${masqueradeQuery(p.as)}`,
    body: JSON.stringify({ messages: p.messages }),
  };
}

/**
 * `PUT /rooms/{roomId}/state/{eventType}/{stateKey}` → `{event_id}`. State is idempotent by
 * nature (same content, same state); the outbox still journals it for order and durability.
 */
export function stateRequest(p: {
  roomId: RoomId;
  eventType: string;
  stateKey: string;
  content: object;
  as?: Masquerade | undefined;
}): MatrixRequest {
  return {
    method: "PUT",
    path: `${CLIENT_V3}/rooms/${seg(p.roomId)}/state/${seg(p.eventType)}/${seg(p.stateKey)}${masqueradeQuery(p.as)}`,
    body: JSON.stringify(p.content),
  };
}

/** `PUT /rooms/{roomId}/redact/{eventId}/{txnId}` with `{reason?}` → `{event_id}`. */
export function redactRequest(p: {
  roomId: RoomId;
  eventId: string;
  txnId: TxnId;
  reason?: string | undefined;
  as?: Masquerade | undefined;
}): MatrixRequest {
  return {
    method: "PUT",
    path: `${CLIENT_V3}/rooms/${seg(p.roomId)}/redact/${seg(p.eventId)}/${seg(p.txnId)}${masqueradeQuery(p.as)}`,
    body: JSON.stringify(p.reason === undefined ? {} : { reason: p.reason }),
  };
}
