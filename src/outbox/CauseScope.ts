import type { DeviceId, RoomId, UserId } from "../ids.ts";
import type { ToDeviceMessages } from "../matrix/requests.ts";
import type { Enqueue, Enqueued, ItemBase, OutboxItem, EnqueueOptions } from "./types.ts";

/**
 * The requests of one cause, numbered in call order per target. Numbering happens when the
 * method is called, not when its promise settles, so `Promise.all([send(a), send(b)])` gives a
 * and b the same ordinals on every replay. Made by `Outbox.cause()`.
 */
export class CauseScope {
  readonly #enqueue: Enqueue;
  readonly #cause: string;
  readonly #defaults: { sender?: UserId; deviceId?: DeviceId };
  readonly #ordinals = new Map<string, number>();

  constructor(enqueue: Enqueue, cause: string, defaults: { sender?: UserId; deviceId?: DeviceId }) {
    this.#enqueue = enqueue;
    this.#cause = cause;
    this.#defaults = defaults;
  }

  /** Sends a room event (`m.room.message` unless `eventType` says otherwise). */
  send(
    roomId: RoomId,
    content: object,
    opts: EnqueueOptions & { eventType?: string } = {},
  ): Promise<Enqueued> {
    const eventType = opts.eventType ?? "m.room.message";
    return this.#item(opts, `send\u0000${roomId}\u0000${eventType}`, (base) => ({
      ...base,
      kind: "send",
      roomId,
      eventType,
      content,
    }));
  }

  sendState(
    roomId: RoomId,
    eventType: string,
    stateKey: string,
    content: object,
    opts: EnqueueOptions = {},
  ): Promise<Enqueued> {
    return this.#item(opts, `state\u0000${roomId}\u0000${eventType}\u0000${stateKey}`, (base) => ({
      ...base,
      kind: "state",
      roomId,
      eventType,
      stateKey,
      content,
    }));
  }

  redact(roomId: RoomId, eventId: string, reason?: string, opts: EnqueueOptions = {}): Promise<Enqueued> {
    return this.#item(opts, `redact\u0000${roomId}\u0000${eventId}`, (base) => ({
      ...base,
      kind: "redact",
      roomId,
      eventId,
      ...(reason === undefined ? {} : { reason }),
    }));
  }

  sendToDevice(eventType: string, messages: ToDeviceMessages, opts: EnqueueOptions = {}): Promise<Enqueued> {
    return this.#item(opts, `toDevice\u0000${eventType}`, (base) => ({
      ...base,
      kind: "sendToDevice",
      eventType,
      messages,
    }));
  }

  #item(opts: EnqueueOptions, target: string, make: (base: ItemBase) => OutboxItem): Promise<Enqueued> {
    const sender = opts.sender ?? this.#defaults.sender;
    const key = `${sender ?? ""}\u0000${target}`;
    const ordinal = this.#ordinals.get(key) ?? 0;
    this.#ordinals.set(key, ordinal + 1);
    return this.#enqueue(
      make({ sender, deviceId: opts.deviceId ?? this.#defaults.deviceId, cause: this.#cause, ordinal }),
    );
  }
}
