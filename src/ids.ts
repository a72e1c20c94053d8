// Branded identifiers: a RoomId cannot be passed where a UserId is expected, and a TxnId only
// comes out of deriveTxnId (or an explicit cast at a trust boundary).
declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

export type RoomId = Brand<string, "RoomId">;
export type UserId = Brand<string, "UserId">;
export type EventId = Brand<string, "EventId">;
export type TxnId = Brand<string, "TxnId">;
export type DeviceId = Brand<string, "DeviceId">;

const USER_ID = /^@[^:\s]+:\S+$/;
const ROOM_ID = /^![^:\s]+(:\S+)?$/;

/** Checks the sigil and shape of a Matrix user id; throws a TypeError naming the bad value. */
export function userId(value: string): UserId {
  if (!USER_ID.test(value))
    throw new TypeError(`Expected a Matrix user id like @name:server, got ${JSON.stringify(value)}`);
  return value as UserId;
}

/** Checks the sigil of a Matrix room id (room version 12 ids have no server part). */
export function roomId(value: string): RoomId {
  if (!ROOM_ID.test(value))
    throw new TypeError(`Expected a Matrix room id like !opaque:server, got ${JSON.stringify(value)}`);
  return value as RoomId;
}
