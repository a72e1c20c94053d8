import type { DeviceId, RoomId, TxnId, UserId } from "../ids.ts";
import {
  fromJournal,
  redactRequest,
  roomSendRequest,
  stateRequest,
  toDeviceRequest,
  type Masquerade,
  type MatrixRequest,
} from "../matrix/requests.ts";
import type { NewOutboxRow, OutboxKind, OutboxRow } from "../store/OutboxStore.ts";
import { EventTooLargeError, NotOurUserError } from "../errors.ts";
import { deriveTxnId } from "./deriveTxnId.ts";
import { chunkToDevice, type ToDeviceChunkLimits } from "./chunkToDevice.ts";
import { withMessageIds } from "./toDeviceIds.ts";
import type { OutboxItem } from "./types.ts";

// Row building: from an item to the rows the outbox stores. Pure functions: the same item and
// settings always give the same rows, byte for byte, which is what makes a replay deduplicate.

/** What row building needs to know of the outbox; fixed when the outbox is made. */
export interface RowSettings {
  /** The registration's `id`; part of every txnId. */
  readonly appserviceId: string;
  /** The sender of an item that names none. */
  readonly botUserId: UserId;
  /** The device of an item that names none, if any. */
  readonly deviceId: DeviceId | undefined;
  /** Largest room event or state content, in bytes of JSON. */
  readonly maxEventBytes: number;
  /** How a large to-device map is split. */
  readonly toDevice: ToDeviceChunkLimits;
  /** Which senders other than the bot an item may name. */
  readonly mayActAs: (userId: UserId) => boolean;
}

/** The lane of a room's requests: sent one after another, in enqueue order. */
export const roomLane = (roomId: RoomId): string => `room:${roomId}`;

/** The lane of one sender's to-device messages. */
export const toDeviceLane = (sender: UserId): string => `todevice:${sender}`;

/**
 * The rows to journal for `item`: one, or one per chunk of a large to-device map. Throws
 * NotOurUserError for a sender the appservice may not act as, EventTooLargeError for content
 * over `maxEventBytes`, and TypeError for a negative or fractional ordinal.
 */
export function rowsFor(item: OutboxItem, settings: RowSettings): NewOutboxRow[] {
  const { botUserId } = settings;
  const sender = item.sender ?? botUserId;
  if (sender !== botUserId && !settings.mayActAs(sender)) throw new NotOurUserError(sender);
  const deviceId = item.deviceId ?? settings.deviceId;
  // The appservice's own user needs no `user_id` unless a device is named: shorter paths, and
  // the same request a plain client would send.
  const as: Masquerade | undefined =
    sender === botUserId && !deviceId ? undefined : { userId: sender, deviceId };
  const id = (kind: OutboxKind, target: string, part = 0): TxnId =>
    itemTxnId(item, sender, settings.appserviceId, kind, target, part);
  const row = (kind: OutboxKind, lane: string, txnId: TxnId, request: MatrixRequest): NewOutboxRow => ({
    txnId,
    lane,
    kind,
    sender,
    request,
  });
  switch (item.kind) {
    case "send": {
      const txnId = id("send", `${item.roomId}\u0000${item.txnType ?? item.eventType}`);
      const request = roomSendRequest({
        roomId: item.roomId,
        eventType: item.eventType,
        txnId,
        content: item.content,
        as,
      });
      checkSize(request, settings.maxEventBytes, `The ${item.eventType} content for ${item.roomId}`);
      return [row("send", roomLane(item.roomId), txnId, request)];
    }
    case "state": {
      const txnId = id("state", `${item.roomId}\u0000${item.eventType}\u0000${item.stateKey}`);
      const request = stateRequest({ ...item, as });
      checkSize(request, settings.maxEventBytes, `The ${item.eventType} state content for ${item.roomId}`);
      return [row("state", roomLane(item.roomId), txnId, request)];
    }
    case "redact": {
      const txnId = id("redact", `${item.roomId}\u0000${item.eventId}`);
      return [row("redact", roomLane(item.roomId), txnId, redactRequest({ ...item, txnId, as }))];
    }
    case "sendToDevice": {
      // Every message carries an id of its own (stable across replays), so that a recipient can
      // drop the duplicate a homeserver may deliver after losing its in-memory dedupe.
      const messages = withMessageIds(item.messages, id("sendToDevice", item.eventType));
      return chunkToDevice(messages, settings.toDevice).map((messages, part) => {
        const txnId = id("sendToDevice", item.eventType, part);
        return row(
          "sendToDevice",
          item.inRoomLane ? roomLane(item.inRoomLane) : toDeviceLane(sender),
          txnId,
          toDeviceRequest({ eventType: item.eventType, txnId, messages, as }),
        );
      });
    }
  }
}

/**
 * The txnId of one request of `item`: derived from the appservice, its sender, its endpoint
 * (`kind` and `target`), its cause and ordinal, and its chunk (`part`).
 */
export function itemTxnId(
  item: Pick<OutboxItem, "cause" | "ordinal">,
  sender: UserId,
  appserviceId: string,
  kind: OutboxKind,
  target: string,
  part = 0,
): TxnId {
  return deriveTxnId({ appserviceId, sender, kind, target, cause: item.cause, ordinal: item.ordinal, part });
}

/** Throws EventTooLargeError when the request's body is over `maxBytes` (UTF-8). */
export function checkSize(request: MatrixRequest, maxBytes: number, what: string): void {
  const bytes = Buffer.byteLength(request.body ?? "");
  if (bytes > maxBytes) throw new EventTooLargeError(what, bytes, maxBytes);
}

/**
 * Rows read back from the store, with their requests' masquerade fields again: the store keeps
 * the method, path and body only. A row this process built keeps them and is passed as it is.
 */
export function fromStore(rows: readonly OutboxRow[]): readonly OutboxRow[] {
  return rows.map((row) => {
    if (row.request.userId || row.request.deviceId) return row;
    const request = fromJournal(row.request);
    return request === row.request ? row : { ...row, request };
  });
}
