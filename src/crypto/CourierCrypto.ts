import type { Logger } from "pino";
import type { DeviceId, UserId } from "../ids.ts";
import type { ItemRunner } from "../inbound/Dispatcher.ts";
import type { InboundItem } from "../inbound/InboundJournal.ts";
import type { MatrixClient } from "../matrix/MatrixClient.ts";
import type { Enqueue, EventSealer, SendItem } from "../outbox/types.ts";
import { CryptoDevice, sessionIdOf, type Decrypted } from "./CryptoDevice.ts";
import { EncryptedRooms } from "./EncryptedRooms.ts";
import type { ParkedEvents } from "../store/CryptoStore.ts";

export interface CourierCryptoOptions {
  readonly client: MatrixClient;
  /** The outbox's enqueue: every to-device request of a machine is journaled there. */
  readonly enqueue: Enqueue;
  readonly botUserId: UserId;
  /** The device of the bot and of every ghost. */
  readonly deviceId: DeviceId;
  /** Ghosts get devices and keys too; otherwise only the bot does (ghosts send in clear). */
  readonly ghosts: boolean;
  /** Users of the appservice's namespace. */
  readonly isOwnUser: (userId: string) => boolean;
  /** Makes sure the user has the device on the homeserver (keys are uploaded for it). */
  readonly ensureDevice: (userId: UserId, deviceId: DeviceId) => Promise<void>;
  readonly storeKey: Uint8Array;
  /** Brings a device's stored state into memory (the IndexedDB mirror). */
  readonly restore: (storeName: string) => Promise<void>;
  /** Settles once the crypto state changed so far is committed in the store. */
  readonly persisted: () => Promise<void>;
  readonly parked: ParkedEvents;
  /** How long an event whose key has not come yet holds its room before it is parked. */
  readonly keyWaitMs: number;
  readonly log: Logger;
}

const OTK_COUNTS = "org.matrix.msc3202.device_one_time_keys_count";
const FALLBACK_TYPES = "org.matrix.msc3202.device_unused_fallback_key_types";
const OVERDUE_SESSIONS_KEPT = 10_000;

/**
 * End-to-end encryption for the bot and the ghosts, between the inbound dispatcher and the
 * plugins, and between the plugins and the outbox:
 *
 * - inbound (`runner`): to-device messages, device-list changes and one-time-key counts go to
 *   the devices' machines in journal order; encrypted room events reach the plugins decrypted.
 *   An event whose key has not come waits for it up to `keyWaitMs`, then is parked and
 *   handled when the key comes; later events of that session are parked without waiting.
 *   Handlers that ask for `m.room.encrypted` see them meanwhile.
 * - outbound (`seal`): a room event for an encrypted room is encrypted before it is journaled.
 */
export class CourierCrypto implements EventSealer {
  readonly #options: CourierCryptoOptions;
  readonly #rooms: EncryptedRooms;
  readonly #devices = new Map<string, Promise<CryptoDevice>>();
  /** Waiters for a Megolm session's key, by session id. */
  readonly #keyWaiters = new Map<string, Set<() => void>>();
  /**
   * Sessions whose key did not come within `keyWaitMs`: a room whose sender never shared its key
   * would otherwise hold each of its events that long, and everything behind them in the room.
   */
  readonly #overdue = new Set<string>();
  #host: ItemRunner | undefined;
  /** Unparking, one session after another: a key reported twice must not run an event twice. */
  #unparking: Promise<void> = Promise.resolve();
  #warnedClear = false;

  constructor(options: CourierCryptoOptions) {
    this.#options = options;
    this.#rooms = new EncryptedRooms(options.client);
  }

  /** Loads the bot's device (keys uploaded), then handles events whose keys came while down. */
  async start(): Promise<void> {
    const bot = await this.device(this.#options.botUserId);
    this.#options.log.info(
      { userId: bot.userId, deviceId: bot.deviceId, ed25519: bot.identityKeys.ed25519 },
      "encryption ready",
    );
    for (const sessionId of await this.#options.parked.sessions()) {
      this.#overdue.add(sessionId); // its next events wait behind the parked ones, in order
      this.#unpark(sessionId);
    }
  }

  /** Whether a user of ours has a device with keys. */
  covers(userId: string): boolean {
    return userId === this.#options.botUserId || (this.#options.ghosts && this.#options.isOwnUser(userId));
  }

  /** The user's machine, loaded on first use (device made on the homeserver, keys uploaded). */
  device(userId: UserId): Promise<CryptoDevice> {
    let device = this.#devices.get(userId);
    if (!device) {
      device = this.#load(userId);
      this.#devices.set(userId, device);
      device.catch(() => this.#devices.delete(userId));
    }
    return device;
  }

  async #load(userId: UserId): Promise<CryptoDevice> {
    const { deviceId, log } = this.#options;
    await this.#options.ensureDevice(userId, deviceId);
    return CryptoDevice.load({
      userId,
      deviceId,
      storeKey: this.#options.storeKey,
      restore: this.#options.restore,
      persisted: this.#options.persisted,
      client: this.#options.client,
      sendToDevice: async (request) => {
        await this.#options.enqueue({
          kind: "sendToDevice",
          sender: request.sender,
          deviceId: request.deviceId,
          eventType: request.eventType,
          messages: request.messages,
          cause: request.cause,
          ordinal: 0,
          inRoomLane: request.inRoomLane,
        });
      },
      onRoomKeys: (keys) => this.#keysArrived(keys),
      log: log.child({ device: `${userId}/${deviceId}` }),
    });
  }

  /** The event to journal: encrypted when its room is encrypted and the sender has a device. */
  async seal(
    item: SendItem & { readonly sender: UserId },
    journaled: () => Promise<boolean>,
  ): Promise<SendItem> {
    const settings = await this.#rooms.settings(item.roomId, this.#reader(item.sender));
    if (!settings || (await journaled())) return item;
    if (!this.covers(item.sender)) {
      if (!this.#warnedClear) {
        this.#warnedClear = true;
        this.#options.log.warn(
          { sender: item.sender, roomId: item.roomId },
          "a ghost sends in clear into an encrypted room: set encryption.ghosts to give ghosts keys",
        );
      }
      return item;
    }
    const device = await this.device(item.sender);
    const members = await this.#rooms.members(item.roomId, this.#reader(item.sender));
    const content = await device.encrypt(item.roomId, members, settings, item.eventType, item.content);
    return {
      ...item,
      eventType: "m.room.encrypted",
      content,
      txnType: item.eventType,
      deviceId: this.#options.deviceId,
    };
  }

  /** The dispatcher's runner: decrypts and feeds the machines, then runs `host` (the plugins). */
  runner(host: ItemRunner): ItemRunner {
    this.#host = host;
    return { dispatch: (item) => this.#dispatch(host, item) };
  }

  /** Frees the machines; their state is stored. */
  async stop(): Promise<void> {
    await this.#unparking;
    const devices = await Promise.allSettled(this.#devices.values());
    for (const d of devices) if (d.status === "fulfilled") d.value.close();
    this.#devices.clear();
  }

  /** Drops events parked before `before` (ms) whose key never came; returns how many. */
  prune(before: number): Promise<number> {
    return this.#options.parked.prune(before);
  }

  /** Devices loaded in this process (metrics). */
  devices(): number {
    return this.#devices.size;
  }

  /** Events waiting for their keys (metrics). */
  parked(): Promise<number> {
    return this.#options.parked.count();
  }

  async #dispatch(host: ItemRunner, item: InboundItem): Promise<string[]> {
    const payload = (item.payload ?? JSON.parse(item.json)) as Record<string, unknown>;
    switch (item.kind) {
      case "event":
        this.#rooms.observe(payload);
        if (payload.type !== "m.room.encrypted" || this.#options.isOwnUser(String(payload.sender)))
          return host.dispatch(item);
        return this.#roomEvent(host, item, payload);
      case "toDevice":
        return this.#toDevice(host, item, payload);
      case "deviceLists": {
        const lists = { changed: strings(payload.changed), left: strings(payload.left) };
        await Promise.all([...this.#devices.values()].map(async (d) => (await d).receive(lists)));
        return [];
      }
      case "otkCounts":
        await this.#keyCounts(payload);
        return [];
      default:
        return host.dispatch(item);
    }
  }

  async #roomEvent(host: ItemRunner, item: InboundItem, payload: Record<string, unknown>): Promise<string[]> {
    // Behind parked events of its session, an event is parked too, even if the key has just come:
    // they are handled in order when it has.
    const overdue = sessionIdOf(payload);
    if (overdue !== undefined && this.#overdue.has(overdue))
      return this.#park(host, item, payload, overdue, false);
    let outcome = await this.#decrypt(payload);
    if (!outcome.ok && outcome.keyMissing && outcome.sessionId) {
      await this.#keyFor(outcome.sessionId, this.#options.keyWaitMs);
      outcome = await this.#decrypt(payload);
      if (!outcome.ok && outcome.keyMissing && outcome.sessionId) {
        this.#markOverdue(outcome.sessionId);
        return this.#park(host, item, payload, outcome.sessionId, true);
      }
    }
    if (outcome.ok) return host.dispatch(decryptedItem(item, payload, outcome));
    this.#options.log.warn(
      { eventId: payload.event_id, roomId: payload.room_id, reason: outcome.reason },
      "could not decrypt this event",
    );
    return host.dispatch(item); // handlers of m.room.encrypted see it as it came
  }

  /** Keeps the event for when its session's key comes; handlers of m.room.encrypted see it now. */
  async #park(
    host: ItemRunner,
    item: InboundItem,
    payload: Record<string, unknown>,
    sessionId: string,
    waited: boolean,
  ): Promise<string[]> {
    await this.#options.parked.park(String(payload.event_id), sessionId, item);
    // The key came and its parked events were handled while this one was being parked.
    if (!this.#overdue.has(sessionId)) this.#unpark(sessionId);
    this.#options.log.info(
      { eventId: payload.event_id, roomId: payload.room_id, sessionId, waited },
      "no key yet for this encrypted event: it is handled when the key comes",
    );
    return host.dispatch(item);
  }

  /** Tries the bot's machine, then the ghosts' that are loaded: the key went to whoever is in the room. */
  async #decrypt(payload: Record<string, unknown>): Promise<Decrypted> {
    let outcome: Decrypted | undefined;
    await this.device(this.#options.botUserId);
    for (const device of this.#devices.values()) {
      outcome = await (await device).decrypt(payload);
      if (outcome.ok || !outcome.keyMissing) return outcome;
    }
    return outcome!;
  }

  async #toDevice(host: ItemRunner, item: InboundItem, payload: Record<string, unknown>): Promise<string[]> {
    const userId = String(payload.to_user_id);
    if (payload.to_device_id !== this.#options.deviceId || !this.covers(userId)) return host.dispatch(item);
    const device = await this.device(userId as UserId);
    const received = await device.receive({ toDevice: [payload] });
    const failures: string[] = [];
    for (const { event, decrypted } of received) {
      const clear = { ...event, to_user_id: userId, to_device_id: payload.to_device_id, decrypted };
      failures.push(...(await host.dispatch({ ...item, payload: clear, json: JSON.stringify(clear) })));
    }
    return failures;
  }

  async #keyCounts(payload: Record<string, unknown>): Promise<void> {
    const counts = (payload[OTK_COUNTS] ?? {}) as Record<string, Record<string, Record<string, number>>>;
    const fallback = (payload[FALLBACK_TYPES] ?? {}) as Record<string, Record<string, string[]>>;
    const { deviceId } = this.#options;
    for (const userId of new Set([...Object.keys(counts), ...Object.keys(fallback)])) {
      if (!this.covers(userId)) continue;
      const keyCounts = counts[userId]?.[deviceId];
      const fallbackKeyTypes = fallback[userId]?.[deviceId];
      if (!keyCounts && !fallbackKeyTypes) continue;
      const device = await this.device(userId as UserId);
      await device.receive({
        ...(keyCounts ? { keyCounts } : {}),
        ...(fallbackKeyTypes ? { fallbackKeyTypes } : {}),
      });
    }
  }

  /** The session's key did not come in time: its next events are parked without waiting again. */
  #markOverdue(sessionId: string): void {
    this.#overdue.add(sessionId);
    // Keys that never come must not grow this without bound: the oldest goes first.
    if (this.#overdue.size > OVERDUE_SESSIONS_KEPT)
      this.#overdue.delete(this.#overdue.values().next().value!);
  }

  #keysArrived(keys: ReadonlyArray<{ sessionId: string }>): void {
    for (const { sessionId } of keys) {
      for (const wake of this.#keyWaiters.get(sessionId) ?? []) wake();
      this.#keyWaiters.delete(sessionId);
      this.#unpark(sessionId, true);
    }
  }

  /** Resolves when the session's key arrives, or after `ms`. */
  #keyFor(sessionId: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.#keyWaiters.get(sessionId) ?? new Set();
      this.#keyWaiters.set(sessionId, waiters);
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      }
      waiters.add(done);
    });
  }

  /** Handles the events parked for this session, if its key now decrypts them. */
  #unpark(sessionId: string, keyCame = false): void {
    this.#unparking = this.#unparking.then(async () => {
      const host = this.#host;
      if (!host) {
        this.#overdue.delete(sessionId); // nothing could unpark them: later events must not wait
        return;
      }
      // Until no event is left that might decrypt: events parked meanwhile are read again.
      const tried = new Set<string>();
      let keyMissing = false;
      for (;;) {
        const items = (await this.#options.parked.waitingFor(sessionId))
          .filter((i) => !tried.has(i.key))
          .sort((a, b) => a.seq - b.seq); // the journal's order, the homeserver's
        if (items.length === 0) break;
        for (const item of items) {
          tried.add(item.key);
          if ((await this.#unparkOne(host, item)) === "keyMissing") keyMissing = true;
        }
      }
      // Later events stop queueing behind parked ones once the key is there.
      if (keyCame || !keyMissing) this.#overdue.delete(sessionId);
    });
    // A failed read must not end the chain: later keys unpark their events all the same.
    this.#unparking = this.#unparking.catch((error: unknown) =>
      this.#options.log.warn({ err: error, sessionId }, "could not read the events parked for a key"),
    );
  }

  /** Handles a parked event if it decrypts now; a failed handler leaves it parked. */
  async #unparkOne(host: ItemRunner, item: InboundItem): Promise<"handled" | "keyMissing" | "undecryptable"> {
    const payload = JSON.parse(item.json) as Record<string, unknown>;
    const outcome = await this.#decrypt(payload);
    if (!outcome.ok) return outcome.keyMissing ? "keyMissing" : "undecryptable";
    try {
      const failures = await host.dispatch(decryptedItem(item, payload, outcome));
      if (failures.length > 0)
        this.#options.log.warn({ failures, eventId: payload.event_id }, "handlers failed");
      await this.#options.parked.done(String(payload.event_id));
    } catch (error) {
      this.#options.log.warn(
        { err: error, eventId: payload.event_id },
        "a parked event failed; tried again later",
      );
    }
    return "handled";
  }

  /** Who reads a room's state for a sender: the sender itself when it is a ghost. */
  #reader(sender: UserId): UserId | undefined {
    return sender === this.#options.botUserId ? undefined : sender;
  }
}

/** The item as plugins get it: the clear event in the envelope of the encrypted one. */
function decryptedItem(
  item: InboundItem,
  payload: Record<string, unknown>,
  outcome: Decrypted & { ok: true },
): InboundItem {
  const clear = {
    ...payload,
    type: outcome.event.type,
    content: outcome.event.content,
    encryption: outcome.encryption,
  };
  return { ...item, payload: clear, json: JSON.stringify(clear) };
}

const strings = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
