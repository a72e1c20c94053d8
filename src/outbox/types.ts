import type { DeviceId, EventId, RoomId, TxnId, UserId } from "../ids.ts";
import type { ToDeviceMessages } from "../matrix/requests.ts";
import type { DeadReason, LaneStats, OutboxRow, OutboxTotals } from "../store/OutboxStore.ts";

/** Fields every outbound request carries: who sends it and what caused it. */
export interface ItemBase {
  /** Masquerade as this user; @default the appservice's bot user. */
  readonly sender?: UserId | undefined;
  /** Masquerade as this device of the sender (persistent dedupe on Synapse). */
  readonly deviceId?: DeviceId | undefined;
  /** What caused the request (inbound event id, timer slot, webhook delivery id). */
  readonly cause: string;
  /** Position among the requests of the same cause to the same target. */
  readonly ordinal: number;
}

export type OutboxItem =
  | SendItem
  | (ItemBase & {
      readonly kind: "state";
      readonly roomId: RoomId;
      readonly eventType: string;
      readonly stateKey: string;
      readonly content: object;
    })
  | (ItemBase & {
      readonly kind: "redact";
      readonly roomId: RoomId;
      readonly eventId: string;
      readonly reason?: string;
    })
  | (ItemBase & {
      readonly kind: "sendToDevice";
      readonly eventType: string;
      readonly messages: ToDeviceMessages;
      /**
       * Send in this room's lane instead of the sender's to-device lane: a room key goes out
       * before the encrypted events it unlocks. @default the sender's to-device lane
       */
      readonly inRoomLane?: RoomId | undefined;
    });

/** A room event to send. */
export type SendItem = ItemBase & {
  readonly kind: "send";
  readonly roomId: RoomId;
  readonly eventType: string;
  readonly content: object;
  /**
   * The type the txnId is derived from, when `eventType` is not the one the cause sent: an
   * encrypted event keeps the txnId of its plaintext. @default eventType
   */
  readonly txnType?: string | undefined;
};

/**
 * Encrypts room events for encrypted rooms before they are journaled (`crypto/`): the row holds
 * the ciphertext, so a retry or a replay sends the same bytes and never encrypts again.
 */
export interface EventSealer {
  /**
   * The event to journal instead of `item`: encrypted when its room is, else `item` itself.
   * `journaled` says whether the item's txnId is journaled already (a replay: the row holds the
   * ciphertext, and encrypting again would only advance the ratchet); asked only for an
   * encrypted room, since it reads the store.
   */
  seal(item: SendItem & { readonly sender: UserId }, journaled: () => Promise<boolean>): Promise<SendItem>;
}

/** Per-send options of a cause scope's helpers (`send`, `sendState`, `redact`, `sendToDevice`). */
export interface EnqueueOptions {
  /** Masquerade as this user. @default the scope's sender, else the appservice's bot user */
  readonly sender?: UserId;
  /** Masquerade as this device of the sender. @default the scope's device, else the outbox's */
  readonly deviceId?: DeviceId;
}

/** The outcome of a delivered request: the event id for room events, nothing for to-device. */
export interface Delivery {
  readonly txnId: TxnId;
  readonly eventId: EventId | undefined;
}

/** What `enqueue` hands back once the request is journaled. */
export interface Enqueued {
  /** The request's txnId (the first chunk's, for a split to-device message). */
  readonly txnId: TxnId;
  /** Every journaled request: several for a to-device map split into chunks. */
  readonly txnIds: readonly TxnId[];
  /** True when every txnId was already journaled: this call changed nothing. */
  readonly duplicate: boolean;
  /**
   * Resolves once every request is accepted by the homeserver; rejects with DeadLetterError if
   * one is dead-lettered. Lazy: nothing is tracked unless you call it.
   */
  delivered(): Promise<Delivery>;
}

/**
 * Journals one item and resolves once it is committed (`Outbox.enqueue`): what a `CauseScope`
 * needs of the outbox.
 */
export type Enqueue = (item: OutboxItem) => Promise<Enqueued>;

export interface OutboxStats {
  readonly lanes: LaneStats[];
  readonly totals: OutboxTotals;
  /** Since this process started. */
  readonly sent: number;
  readonly retried: number;
  readonly dead: number;
  readonly rateLimited: number;
  readonly inFlight: number;
}

export interface OutboxEvents {
  /** A new row was committed (not emitted for a txnId already journaled). */
  enqueued: [row: OutboxRow];
  sent: [row: OutboxRow, eventId: string | undefined, latencyMs: number];
  retry: [row: OutboxRow, reason: string, delayMs: number, error: unknown];
  rateLimited: [sender: string, pauseMs: number];
  dead: [row: OutboxRow, reason: DeadReason];
}
