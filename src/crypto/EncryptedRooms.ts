import type { RoomId, UserId } from "../ids.ts";
import type { MatrixClient } from "../matrix/MatrixClient.ts";
import type { RoomEncryptionSettings } from "./CryptoDevice.ts";

/**
 * What sealing needs to know of a room: whether it is encrypted (and how: rotation, history
 * visibility), and who is in it. Read from the homeserver once, then kept up to date from the
 * room's inbound state events (`observe`): the appservice receives every event of a room its
 * users are in. Encryption, once on, cannot be turned off (spec: m.room.encryption).
 */
export class EncryptedRooms {
  readonly #client: MatrixClient;
  readonly #settings = new Map<string, Promise<RoomEncryptionSettings | undefined>>();
  readonly #members = new Map<string, Promise<UserId[]>>();

  constructor(client: MatrixClient) {
    this.#client = client;
  }

  /** The room's encryption settings, or undefined for a room in clear. Reads as `as`. */
  settings(roomId: RoomId, as: UserId | undefined): Promise<RoomEncryptionSettings | undefined> {
    return cached(this.#settings, roomId, async () => {
      const masquerade = as ? { userId: as } : undefined;
      const encryption = await this.#client.getStateEvent(roomId, "m.room.encryption", "", masquerade);
      if (encryption?.content.algorithm !== "m.megolm.v1.aes-sha2") return undefined;
      const visibility = await this.#client.getStateEvent(
        roomId,
        "m.room.history_visibility",
        "",
        masquerade,
      );
      return {
        rotationPeriodMs: number(encryption.content.rotation_period_ms),
        rotationPeriodMsgs: number(encryption.content.rotation_period_msgs),
        historyVisibility:
          typeof visibility?.content.history_visibility === "string"
            ? visibility.content.history_visibility
            : undefined,
      };
    });
  }

  /** Who gets the room key: the joined and invited users. Reads as `as`. */
  members(roomId: RoomId, as: UserId | undefined): Promise<UserId[]> {
    return cached(this.#members, roomId, () =>
      this.#client.roomMembers(roomId, as ? { userId: as } : undefined),
    );
  }

  /** An inbound room event: forgets what it changes. No I/O. */
  observe(event: Record<string, unknown>): void {
    const roomId = event.room_id as string;
    if (event.state_key === undefined) return;
    if (event.type === "m.room.encryption" || event.type === "m.room.history_visibility") {
      this.#settings.delete(roomId);
    }
    if (event.type === "m.room.member") this.#members.delete(roomId);
  }
}

/** The cached answer, or a new read; a failed read is not kept. */
function cached<T>(cache: Map<string, Promise<T>>, key: string, read: () => Promise<T>): Promise<T> {
  let value = cache.get(key);
  if (!value) {
    value = read();
    cache.set(key, value);
    value.catch(() => cache.delete(key));
  }
  return value;
}

const number = (value: unknown): number | undefined => (typeof value === "number" ? value : undefined);
