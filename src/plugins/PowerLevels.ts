/** Reads one state event of a room (the bot's view); undefined when the room has none. */
export type StateReader = (
  roomId: string,
  eventType: string,
) => Promise<{ sender?: string; content: Record<string, unknown> } | undefined>;

/** Power of room creators in room version 12 and later: above any level in m.room.power_levels. */
export const CREATOR_POWER = Number.POSITIVE_INFINITY;

interface RoomPower {
  readonly users: Readonly<Record<string, unknown>>;
  readonly usersDefault: number;
  readonly creators: ReadonlySet<string>;
}

/**
 * Users' power levels per room, for commands with `minPowerLevel`. Read from the homeserver on
 * first use and cached; the cache of a room is dropped when an m.room.power_levels event of it
 * comes in, so a promotion counts from the next command on.
 */
export class PowerLevels {
  readonly #read: StateReader;
  readonly #rooms = new Map<string, Promise<RoomPower>>();

  constructor(read: StateReader) {
    this.#read = read;
  }

  /** The user's level in the room. Does network I/O on a cache miss; rejects when the state cannot be read. */
  async levelOf(roomId: string, userId: string): Promise<number> {
    let room = this.#rooms.get(roomId);
    if (!room) {
      room = this.#load(roomId);
      this.#rooms.set(roomId, room);
      room.catch(() => this.#rooms.delete(roomId));
    }
    const { users, usersDefault, creators } = await room;
    if (creators.has(userId)) return CREATOR_POWER;
    const level = users[userId];
    return typeof level === "number" ? level : usersDefault;
  }

  forget(roomId: string): void {
    this.#rooms.delete(roomId);
  }

  async #load(roomId: string): Promise<RoomPower> {
    const [levels, create] = await Promise.all([
      this.#read(roomId, "m.room.power_levels"),
      this.#read(roomId, "m.room.create"),
    ]);
    const content = levels?.content ?? {};
    const creators = new Set<string>();
    const version = Number(create?.content.room_version ?? 1);
    // Room version 12: the creator(s) outrank everyone and are not listed in the power levels.
    if (Number.isFinite(version) && version >= 12) {
      if (create?.sender) creators.add(create.sender);
      for (const id of (create?.content.additional_creators as unknown[] | undefined) ?? [])
        if (typeof id === "string") creators.add(id);
    }
    // Without m.room.power_levels the creator has 100, everyone else 0 (the spec's defaults).
    const legacyCreator = create?.sender ?? (create?.content.creator as string | undefined);
    const users =
      levels === undefined && legacyCreator
        ? { [legacyCreator]: 100 }
        : ((content.users as Record<string, unknown>) ?? {});
    const usersDefault = typeof content.users_default === "number" ? content.users_default : 0;
    return { users, usersDefault, creators };
  }
}
