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
  /**
   * The user the request masquerades as (the query's `user_id`), set by the builder that wrote
   * the query. Not sent on its own: it tells the transport whose device to provision.
   */
  readonly userId?: UserId | undefined;
  /**
   * The device the request masquerades as (the query's `device_id`), set by the builder that
   * wrote the query. Not sent on its own: the transport makes sure the device exists.
   */
  readonly deviceId?: DeviceId | undefined;
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
 * Query string for masquerading, then `extra` parameters (already encoded, `name=value`).
 * Parameter order is fixed so a replay is byte-identical. The device goes both as the stable
 * `device_id` (Synapse ≥ 1.141) and as MSC3202's unstable name.
 */
export function masqueradeQuery(as: Masquerade | undefined, ...extra: string[]): string {
  const params: string[] = [];
  if (as?.userId) params.push(`user_id=${seg(as.userId)}`);
  if (as?.deviceId) {
    params.push(`device_id=${seg(as.deviceId)}`);
    params.push(`org.matrix.msc3202.device_id=${seg(as.deviceId)}`);
  }
  params.push(...extra);
  return params.length ? `?${params.join("&")}` : "";
}

/**
 * A request to `path` (given without its query) sent as `as`: the masquerade goes in the query,
 * and in the request's own fields for the transport.
 */
function masqueraded(path: string, body: string, as: Masquerade | undefined): MatrixRequest {
  return {
    method: "PUT",
    path: path + masqueradeQuery(as),
    body,
    userId: as?.userId,
    deviceId: as?.deviceId,
  };
}

/**
 * A request read back from a journal that keeps only its method, path and body, with its
 * masquerade fields again, read from the query `masqueradeQuery` wrote. No I/O. Returns the
 * request itself when its path has no query.
 */
export function fromJournal(request: MatrixRequest): MatrixRequest {
  const q = request.path.indexOf("?");
  if (q < 0) return request;
  const query = new URLSearchParams(request.path.slice(q + 1));
  const userId = query.get("user_id") ?? undefined;
  // The builders write both names; MSC3202's alone is read too, as the transport always has.
  const deviceId = query.get("device_id") ?? query.get("org.matrix.msc3202.device_id") ?? undefined;
  return { ...request, userId: userId as UserId | undefined, deviceId: deviceId as DeviceId | undefined };
}

/** `PUT /rooms/{roomId}/send/{eventType}/{txnId}` → `{event_id}`. */
export function roomSendRequest(p: {
  roomId: RoomId;
  eventType: string;
  txnId: TxnId;
  content: object;
  as?: Masquerade | undefined;
}): MatrixRequest {
  return masqueraded(
    `${CLIENT_V3}/rooms/${seg(p.roomId)}/send/${seg(p.eventType)}/${seg(p.txnId)}`,
    JSON.stringify(p.content),
    p.as,
  );
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
  return masqueraded(
    `${CLIENT_V3}/sendToDevice/${seg(p.eventType)}/${seg(p.txnId)}`,
    JSON.stringify({ messages: p.messages }),
    p.as,
  );
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
  return masqueraded(
    `${CLIENT_V3}/rooms/${seg(p.roomId)}/state/${seg(p.eventType)}/${seg(p.stateKey)}`,
    JSON.stringify(p.content),
    p.as,
  );
}

/** `PUT /rooms/{roomId}/redact/{eventId}/{txnId}` with `{reason?}` → `{event_id}`. */
export function redactRequest(p: {
  roomId: RoomId;
  eventId: string;
  txnId: TxnId;
  reason?: string | undefined;
  as?: Masquerade | undefined;
}): MatrixRequest {
  return masqueraded(
    `${CLIENT_V3}/rooms/${seg(p.roomId)}/redact/${seg(p.eventId)}/${seg(p.txnId)}`,
    JSON.stringify(p.reason === undefined ? {} : { reason: p.reason }),
    p.as,
  );
}
