import {
  DecryptionSettings,
  DeviceId as SdkDeviceId,
  DeviceLists,
  EncryptionSettings,
  HistoryVisibility,
  initAsync,
  KeysUploadRequest,
  MegolmDecryptionError,
  OlmMachine,
  ProcessedToDeviceEventType,
  RequestType,
  RoomId as SdkRoomId,
  ShieldStateCode,
  StoreHandle,
  ToDeviceRequest,
  ToDeviceUnableToDecryptReason,
  TrustRequirement,
  UserId as SdkUserId,
  type DecryptedToDeviceEvent,
  type InvalidToDeviceEvent,
  type PlainTextToDeviceEvent,
  type UTDToDeviceEvent,
} from "@matrix-org/matrix-sdk-crypto-wasm";
import type { Logger } from "pino";
import type { DeviceId, RoomId, UserId } from "../ids.ts";
import type { MatrixClient } from "../matrix/MatrixClient.ts";
import type { ToDeviceMessages } from "../matrix/requests.ts";
import type { EventEncryption } from "../plugins/events.ts";
import { isKeyRequest, sendKeyRequest } from "./keyRequests.ts";

/** A to-device request of the machine, to journal in the outbox. */
export interface DeviceToDevice {
  readonly sender: UserId;
  readonly deviceId: DeviceId;
  readonly eventType: string;
  readonly messages: ToDeviceMessages;
  /** Unique per sending device and request: the sdk keeps a request's `txn_id` until it is sent. */
  readonly cause: string;
  /** A room key: sent in the room's lane, ahead of the events it unlocks. */
  readonly inRoomLane: RoomId | undefined;
}

export interface CryptoDeviceParts {
  readonly userId: UserId;
  readonly deviceId: DeviceId;
  /** 32 bytes: the sdk encrypts every stored value with it. */
  readonly storeKey: Uint8Array;
  /** Brings this device's stored state into memory before the sdk opens it. */
  readonly restore: (storeName: string) => Promise<void>;
  /**
   * Settles once the device's state changed so far is committed in the store: awaited before
   * anything built on it is journaled, so a crash never leaves a ratchet behind a sent message.
   */
  readonly persisted: () => Promise<void>;
  readonly client: MatrixClient;
  /** Journals a to-device request in the outbox; resolves once it is committed. */
  readonly sendToDevice: (request: DeviceToDevice) => Promise<void>;
  /** Room keys arrived (events waiting for them can be decrypted now). */
  readonly onRoomKeys: (keys: ReadonlyArray<{ roomId: string; sessionId: string }>) => void;
  readonly log: Logger;
}

export type Decrypted =
  | { readonly ok: true; readonly event: Record<string, unknown>; readonly encryption: EventEncryption }
  | {
      readonly ok: false;
      /** The key may still come (missing, or known only from a later index): worth waiting for. */
      readonly keyMissing: boolean;
      readonly sessionId: string | undefined;
      readonly reason: string;
    };

/** A to-device message after the machine has seen it: decrypted, or in clear. */
export interface ReceivedToDevice {
  readonly event: Record<string, unknown>;
  readonly decrypted: boolean;
}

/** What a room's `m.room.encryption` state sets for its keys. */
export interface RoomEncryptionSettings {
  readonly rotationPeriodMs?: number | undefined;
  readonly rotationPeriodMsgs?: number | undefined;
  readonly historyVisibility?: string | undefined;
}

/** Longest wait for the sdk's encrypt: it never settles after an internal panic. */
const ENCRYPT_TIMEOUT_MS = 15_000;

let sdkReady: Promise<void> | undefined;

/**
 * One OlmMachine: the keys and sessions of one device of the bot or a ghost, persisted in the
 * framework's store. Every change of its state is serialised here (one call at a time), so its
 * outgoing requests are sent once, in the order the machine made them: key requests straight to
 * the homeserver, to-device ones journaled in the outbox before the machine marks them sent.
 */
export class CryptoDevice {
  readonly userId: UserId;
  readonly deviceId: DeviceId;
  readonly #machine: OlmMachine;
  readonly #parts: CryptoDeviceParts;
  #queue: Promise<unknown> = Promise.resolve();
  /** The homeserver's last count of our one-time keys; the sdk takes a missing count for 0. */
  #keyCounts: Map<string, number> | undefined;
  #broken: string | undefined;
  /** Per room, the members whose devices were queried and Olm sessions claimed last time. */
  readonly #sessionsFor = new Map<string, string>();

  private constructor(machine: OlmMachine, parts: CryptoDeviceParts) {
    this.#machine = machine;
    this.#parts = parts;
    this.userId = parts.userId;
    this.deviceId = parts.deviceId;
  }

  /** Opens the device's stored state (creating its keys the first time) and uploads its keys. */
  static async load(parts: CryptoDeviceParts): Promise<CryptoDevice> {
    sdkReady ??= initAsync();
    await sdkReady;
    const storeName = `courier/${parts.userId}/${parts.deviceId}`;
    await parts.restore(`${storeName}::`); // the sdk's databases are `<name>::matrix-sdk-crypto…`
    const handle = await StoreHandle.openWithKey(storeName, parts.storeKey);
    const machine = await OlmMachine.initFromStore(
      new SdkUserId(parts.userId),
      new SdkDeviceId(parts.deviceId),
      handle,
    );
    handle.free();
    machine.registerRoomKeyUpdatedCallback(async (keys) => {
      parts.onRoomKeys(keys.map((k) => ({ roomId: k.roomId.toString(), sessionId: k.sessionId })));
    });
    // Device-list changes that came while this machine was not loaded were not fed to it.
    await machine.markAllTrackedUsersAsDirty();
    const device = new CryptoDevice(machine, parts);
    await device.#exclusive(() => device.#flush());
    return device;
  }

  /** The device's public identity keys (they never change for a device). */
  get identityKeys(): { ed25519: string; curve25519: string } {
    const keys = this.#machine.identityKeys;
    return { ed25519: keys.ed25519.toBase64(), curve25519: keys.curve25519.toBase64() };
  }

  /**
   * Feeds what a transaction carried for this device: its to-device messages, device-list
   * changes, and the homeserver's count of its one-time keys; then sends what the machine asks
   * for (one-time keys topped up, device lists queried). Returns the to-device messages as
   * plugins see them: decrypted where they were encrypted; room keys and other crypto
   * signalling are the machine's own and are not returned.
   */
  receive(input: {
    toDevice?: readonly object[];
    changed?: readonly string[];
    left?: readonly string[];
    keyCounts?: Record<string, number>;
    fallbackKeyTypes?: readonly string[];
  }): Promise<ReceivedToDevice[]> {
    return this.#exclusive(async () => {
      if (input.keyCounts) this.#keyCounts = new Map(Object.entries(input.keyCounts));
      // A device came or went, or a new Olm session may be needed: check again at the next encrypt.
      if ((input.changed?.length ?? 0) + (input.left?.length ?? 0) + (input.toDevice?.length ?? 0) > 0)
        this.#sessionsFor.clear();
      const processed = await this.#machine.receiveSyncChanges(
        JSON.stringify(input.toDevice ?? []),
        new DeviceLists(
          (input.changed ?? []).map((u) => new SdkUserId(u)),
          (input.left ?? []).map((u) => new SdkUserId(u)),
        ),
        this.#keyCounts ?? new Map(),
        input.fallbackKeyTypes ? new Set(input.fallbackKeyTypes) : undefined,
      );
      await this.#flush();
      const events = processed as ProcessedToDevice[];
      for (const p of events) this.#warnUndecryptable(p);
      return events.flatMap((p) => forPlugins(p));
    });
  }

  /** Decrypts a room event; the reason when it cannot (yet). */
  async decrypt(event: Record<string, unknown>): Promise<Decrypted> {
    const roomId = String(event.room_id);
    try {
      const decrypted = await this.#machine.decryptRoomEvent(
        JSON.stringify(event),
        new SdkRoomId(roomId),
        new DecryptionSettings(TrustRequirement.Untrusted),
      );
      const shield = decrypted.shieldState(false);
      const clear = JSON.parse(decrypted.event) as Record<string, unknown>;
      return {
        ok: true,
        event: clear,
        encryption: {
          algorithm: "m.megolm.v1.aes-sha2",
          senderDevice: decrypted.senderDevice?.toString(),
          senderCurve25519Key: decrypted.senderCurve25519Key,
          trust: trustOf(shield.code),
          warning: shield.message,
        },
      };
    } catch (error) {
      const sessionId = sessionIdOf(event);
      if (error instanceof MegolmDecryptionError) {
        return {
          ok: false,
          keyMissing: error.code === 0 || error.code === 1, // MissingRoomKey, UnknownMessageIndex
          sessionId,
          reason: error.description,
        };
      }
      return { ok: false, keyMissing: false, sessionId, reason: (error as Error).message ?? String(error) };
    }
  }

  /**
   * Encrypts a room event for `members`. In the only order that cannot trip the sdk's panic
   * (an encrypt before the room key is shared never settles): device keys queried, missing Olm
   * sessions claimed, the room key shared (its to-device messages committed in the outbox, in
   * the room's lane, before the machine marks them sent), then the encrypt.
   */
  encrypt(
    roomId: RoomId,
    members: readonly string[],
    settings: RoomEncryptionSettings,
    eventType: string,
    content: object,
  ): Promise<Record<string, unknown>> {
    return this.#exclusive(async () => {
      if (this.#broken) throw new Error(`encryption on this device is broken until restart: ${this.#broken}`);
      // The sdk takes ownership of (and frees) the ids in an array it is given: fresh ones each call.
      const users = () => members.map((m) => new SdkUserId(m));
      const room = () => new SdkRoomId(roomId);
      // Devices known and Olm sessions made for these members already, unless a device list
      // changed since: then only the share (a no-op until the session rotates) and the encrypt.
      const membersKey = [...members].sort().join("\u0000");
      if (this.#sessionsFor.get(roomId) !== membersKey) {
        await this.#machine.updateTrackedUsers(users());
        await this.#flush();
        const claim = await this.#machine.getMissingSessions(users());
        if (claim) {
          const answer = await sendKeyRequest(this.#parts.client, claim, this.#as());
          await this.#machine.markRequestAsSent(claim.id, RequestType.KeysClaim, answer);
        }
        this.#sessionsFor.set(roomId, membersKey);
      }
      for (const request of await this.#machine.shareRoomKey(room(), users(), encryptionSettings(settings))) {
        await this.#toDevice(request, roomId);
      }
      const sealed = await timeout(
        this.#machine.encryptRoomEvent(room(), eventType, JSON.stringify(content)),
        ENCRYPT_TIMEOUT_MS,
      ).catch((error: unknown) => {
        this.#broken = (error as Error).message;
        throw error;
      });
      await this.#parts.persisted();
      return JSON.parse(sealed) as Record<string, unknown>;
    });
  }

  /** Frees the machine; its state is already stored. */
  close(): void {
    this.#machine.close();
  }

  /** Sends every request the machine has: one pass; what fails is asked for again next time. */
  async #flush(): Promise<void> {
    for (const request of await this.#machine.outgoingRequests()) {
      try {
        if (request instanceof ToDeviceRequest) {
          await this.#toDevice(request, undefined);
        } else if (isKeyRequest(request)) {
          const answer = await sendKeyRequest(this.#parts.client, request, this.#as());
          if (request instanceof KeysUploadRequest) this.#noteCounts(answer);
          if (request.id) await this.#machine.markRequestAsSent(request.id, request.type, answer);
        } else {
          const { type } = request as { type: RequestType };
          this.#parts.log.debug({ type }, "crypto request of a kind this framework does not send");
        }
      } catch (error) {
        this.#parts.log.warn({ err: error, type: request.type }, "crypto request failed; asked again later");
      }
    }
    if (!this.#keyCounts) {
      // The machine never learnt the count (a restored device): ask, without uploading anything.
      const answer = await sendKeyRequest(
        this.#parts.client,
        new KeysUploadRequest("count", "{}"),
        this.#as(),
      ).catch(() => undefined);
      if (answer) this.#noteCounts(answer);
    }
  }

  #noteCounts(answer: string): void {
    const counts = (JSON.parse(answer) as { one_time_key_counts?: Record<string, number> })
      .one_time_key_counts;
    if (counts) this.#keyCounts = new Map(Object.entries(counts));
  }

  /** Journals a to-device request in the outbox (committed), then marks it sent to the machine. */
  async #toDevice(request: ToDeviceRequest, inRoomLane: RoomId | undefined): Promise<void> {
    const { messages } = JSON.parse(request.body) as { messages: ToDeviceMessages };
    await this.#parts.persisted();
    await this.#parts.sendToDevice({
      sender: this.userId,
      deviceId: this.deviceId,
      eventType: request.event_type,
      messages,
      cause: `e2ee:${this.deviceId}:${request.txn_id}`,
      inRoomLane,
    });
    await this.#machine.markRequestAsSent(request.id, RequestType.ToDevice, "{}");
  }

  #as(): { userId: UserId; deviceId: DeviceId } {
    return { userId: this.userId, deviceId: this.deviceId };
  }

  /**
   * A to-device message the machine could not decrypt is lost to the plugins and, when it was a
   * room key, leaves that sender's room events parked: the operator sees which sender and why.
   */
  #warnUndecryptable(processed: ProcessedToDevice): void {
    if (
      processed.type !== ProcessedToDeviceEventType.UnableToDecrypt &&
      processed.type !== ProcessedToDeviceEventType.Invalid
    )
      return;
    const event = JSON.parse(processed.rawEvent) as {
      sender?: unknown;
      type?: unknown;
      content?: { sender_key?: unknown };
    };
    const reason =
      processed.type === ProcessedToDeviceEventType.UnableToDecrypt
        ? ToDeviceUnableToDecryptReason[(processed as UTDToDeviceEvent).utdInfo.reason]
        : "invalid";
    this.#parts.log.warn(
      {
        sender: event.sender,
        type: event.type,
        senderKey: event.content?.sender_key,
        reason,
      },
      "a to-device message for this device could not be decrypted",
    );
  }

  #exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => {});
    return run;
  }
}

type ProcessedToDevice =
  DecryptedToDeviceEvent | PlainTextToDeviceEvent | InvalidToDeviceEvent | UTDToDeviceEvent;

/** The Megolm session of an encrypted room event, read from its clear envelope. */
export function sessionIdOf(event: Record<string, unknown>): string | undefined {
  const content = event.content as { session_id?: unknown } | undefined;
  return typeof content?.session_id === "string" ? content.session_id : undefined;
}

function forPlugins(processed: ProcessedToDevice): ReceivedToDevice[] {
  const event = JSON.parse(processed.rawEvent) as Record<string, unknown>;
  // Room keys, key requests and verification are the machine's business.
  if (
    typeof event.type === "string" &&
    /^m\.(room_key|forwarded_room_key|secret|key\.verification|dummy)/.test(event.type)
  )
    return [];
  if (processed.type === ProcessedToDeviceEventType.Decrypted) return [{ event, decrypted: true }];
  if (processed.type === ProcessedToDeviceEventType.PlainText) return [{ event, decrypted: false }];
  return [];
}

function encryptionSettings(room: RoomEncryptionSettings): EncryptionSettings {
  const settings = new EncryptionSettings();
  if (room.rotationPeriodMs) settings.rotationPeriod = BigInt(room.rotationPeriodMs) * 1000n; // µs
  if (room.rotationPeriodMsgs) settings.rotationPeriodMessages = BigInt(room.rotationPeriodMsgs);
  const visibility: Record<string, HistoryVisibility> = {
    invited: HistoryVisibility.Invited,
    joined: HistoryVisibility.Joined,
    shared: HistoryVisibility.Shared,
    world_readable: HistoryVisibility.WorldReadable,
  };
  settings.historyVisibility = visibility[room.historyVisibility ?? "shared"] ?? HistoryVisibility.Shared;
  return settings;
}

/**
 * The sdk's shield, in the plugin's words: no warning is "verified"; a device its owner has not
 * signed, or a user not verified, is "unverified" (every device without cross-signing, the bot's
 * own view of most senders); anything else (unknown device, keys not guaranteed, a verification
 * violated, a mismatched sender) is "warning".
 */
function trustOf(code: ShieldStateCode | undefined): EventEncryption["trust"] {
  if (code === undefined) return "verified";
  if (code === ShieldStateCode.UnsignedDevice || code === ShieldStateCode.UnverifiedIdentity)
    return "unverified";
  return "warning";
}

function timeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the sdk did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
