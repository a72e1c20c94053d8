import type { Logger } from "pino";
import type { Intent } from "../plugins/definePlugin.ts";
import type { PluginStore } from "../store/PluginStore.ts";
import type { RemoteUser } from "./BridgeConnector.ts";
import type { GhostNamespace } from "./ghostLocalpart.ts";

/**
 * Remote users as appservice users. A ghost is registered on first use, its display name and
 * avatar are set only when they differ from what was last set (kept in the plugin's store), and it
 * joins a room only when it first acts there (the bot invites it when the room is not public).
 */
export class Ghosts {
  readonly #ns: GhostNamespace;
  readonly #store: PluginStore;
  readonly #intent: (userId: string) => Intent;
  readonly #botUserId: string;
  readonly #log: Logger;
  /** room \0 ghost: joined in this process (joining is idempotent, so a restart just joins again). */
  readonly #joined = new Set<string>();

  constructor(options: {
    namespace: GhostNamespace;
    store: PluginStore;
    intent: (userId: string) => Intent;
    botUserId: string;
    log: Logger;
  }) {
    this.#ns = options.namespace;
    this.#store = options.store;
    this.#intent = options.intent;
    this.#botUserId = options.botUserId;
    this.#log = options.log;
  }

  userId(remoteId: string): string {
    return this.#ns.userId(remoteId);
  }

  /** The ghost of `user`, registered, its profile up to date, joined to `roomId` when given. Does I/O. */
  async ensure(user: RemoteUser, roomId?: string): Promise<string> {
    const userId = this.#ns.userId(user.id);
    const intent = this.#intent(userId);
    const key = `ghost:${user.id}`;
    const last = await this.#store.get<{ displayName?: string; avatarUrl?: string }>(key);
    if (!last) await intent.ensureRegistered();
    if (last?.displayName !== user.displayName || last?.avatarUrl !== user.avatarUrl) {
      if (last?.displayName !== user.displayName) await intent.setDisplayName(user.displayName);
      if (user.avatarUrl !== undefined && last?.avatarUrl !== user.avatarUrl) {
        await intent.setAvatarUrl(user.avatarUrl);
      }
      await this.#store.set(key, { displayName: user.displayName, avatarUrl: user.avatarUrl });
    }
    if (roomId !== undefined) await this.join(userId, roomId);
    return userId;
  }

  /** Joins the ghost to the room once per process; invites it first when the room needs that. */
  async join(userId: string, roomId: string): Promise<void> {
    const key = `${roomId}\u0000${userId}`;
    if (this.#joined.has(key)) return;
    const intent = this.#intent(userId);
    try {
      await intent.join(roomId);
    } catch (error) {
      // Not public: the bot (a member with invite rights) invites, then the ghost joins.
      this.#log.debug({ err: error, userId, roomId }, "ghost could not join; inviting it");
      await this.#intent(this.#botUserId).invite(roomId, userId);
      await intent.join(roomId);
    }
    this.#joined.add(key);
  }

  async leave(remoteId: string, roomId: string): Promise<void> {
    const userId = this.#ns.userId(remoteId);
    this.#joined.delete(`${roomId}\u0000${userId}`);
    await this.#intent(userId).leave(roomId);
  }

  isGhost(userId: string): boolean {
    return this.#ns.remoteId(userId) !== undefined;
  }
}
