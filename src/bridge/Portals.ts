import type { Intent } from "../plugins/definePlugin.ts";
import type { PluginStore } from "../store/PluginStore.ts";
import type { RemoteChannel } from "./BridgeConnector.ts";

/** A remote channel bridged to a Matrix room. */
export interface Portal {
  readonly channelId: string;
  readonly roomId: string;
}

export interface PortalRoomOptions {
  /** `public_chat` lets anyone with the room id join; `private_chat` needs invites. */
  readonly preset: "public_chat" | "private_chat";
  /** Matrix users invited to every room the bridge creates. */
  readonly invite: readonly string[];
}

/**
 * The persistent map between remote channels and Matrix rooms (`portal:c:<channel>` and
 * `portal:r:<room>` in the plugin's store), read into memory at start. A portal is made from
 * config, by the `link` command, or by an alias query; each one is one channel and one room.
 */
export class Portals {
  readonly #store: PluginStore;
  readonly #bot: () => Intent;
  readonly #byChannel = new Map<string, Portal>();
  readonly #byRoom = new Map<string, Portal>();

  readonly #created: (portal: Portal) => Promise<void>;

  /** `created` runs after a room was created for a channel (a bridge backfills there). */
  constructor(
    store: PluginStore,
    bot: () => Intent,
    created: (portal: Portal) => Promise<void> = async () => {},
  ) {
    this.#store = store;
    this.#bot = bot;
    this.#created = created;
  }

  /** Reads every portal from the store. Does I/O. */
  async load(): Promise<void> {
    for (const { value } of await this.#store.list<Portal>("portal:c:")) this.#remember(value);
  }

  byChannel(channelId: string): Portal | undefined {
    return this.#byChannel.get(channelId);
  }

  byRoom(roomId: string): Portal | undefined {
    return this.#byRoom.get(roomId);
  }

  all(): Portal[] {
    return [...this.#byChannel.values()];
  }

  /** Bridges the channel to an existing room (the bot must be in it). Replaces no other portal: throws if either is linked. */
  async link(channelId: string, roomId: string): Promise<Portal> {
    const taken = this.#byChannel.get(channelId) ?? this.#byRoom.get(roomId);
    if (taken) throw new Error(`${taken.channelId} is already bridged to ${taken.roomId}`);
    const portal = { channelId, roomId };
    await this.#store.set(`portal:r:${roomId}`, portal);
    await this.#store.set(`portal:c:${channelId}`, portal);
    this.#remember(portal);
    return portal;
  }

  /** Creates a room for the channel (named after it, with its topic, and `alias` when given) and bridges them. */
  async create(channel: RemoteChannel, room: PortalRoomOptions, alias?: string): Promise<Portal> {
    const existing = this.#byChannel.get(channel.id);
    if (existing) return existing;
    const roomId = await this.#bot().createRoom({
      preset: room.preset,
      name: channel.name,
      ...(channel.topic ? { topic: channel.topic } : {}),
      ...(alias ? { room_alias_name: alias } : {}),
      invite: room.invite,
    });
    const portal = await this.link(channel.id, roomId);
    await this.#created(portal);
    return portal;
  }

  /** Ends the bridging of the channel; resolves the portal it was, or undefined. Does I/O. */
  async unlink(channelId: string): Promise<Portal | undefined> {
    const portal = this.#byChannel.get(channelId);
    if (!portal) return undefined;
    await this.#store.delete(`portal:c:${channelId}`);
    await this.#store.delete(`portal:r:${portal.roomId}`);
    this.#byChannel.delete(channelId);
    this.#byRoom.delete(portal.roomId);
    return portal;
  }

  #remember(portal: Portal): void {
    this.#byChannel.set(portal.channelId, portal);
    this.#byRoom.set(portal.roomId, portal);
  }
}
