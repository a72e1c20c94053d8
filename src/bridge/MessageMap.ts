import type { PluginStore } from "../store/PluginStore.ts";
import type { RemoteUser } from "./BridgeConnector.ts";

/**
 * Remote message id ↔ Matrix event id, per channel, in the plugin's store: edits, redactions and
 * replies are mapped through it both ways. Every method does I/O.
 */
export class MessageMap {
  readonly #store: PluginStore;

  constructor(store: PluginStore) {
    this.#store = store;
  }

  async set(channelId: string, remoteId: string, eventId: string): Promise<void> {
    await this.#store.set(`msg:r:${channelId}\u0000${remoteId}`, eventId);
    await this.#store.set(`msg:m:${eventId}`, { channelId, remoteId });
  }

  /** The Matrix event of a remote message, or undefined when it was never bridged. */
  eventFor(channelId: string, remoteId: string): Promise<string | undefined> {
    return this.#store.get<string>(`msg:r:${channelId}\u0000${remoteId}`);
  }

  /** Records the remote user who sent a bridged message (replies to it name them). */
  async setSender(eventId: string, sender: RemoteUser): Promise<void> {
    await this.#store.set(`msg:s:${eventId}`, sender);
  }

  /** The remote user who sent a bridged message, or undefined for any other event. */
  senderOf(eventId: string): Promise<RemoteUser | undefined> {
    return this.#store.get<RemoteUser>(`msg:s:${eventId}`);
  }

  /** The remote message of a Matrix event, or undefined when it was never bridged. */
  async remoteFor(eventId: string): Promise<string | undefined> {
    return (await this.#store.get<{ remoteId: string }>(`msg:m:${eventId}`))?.remoteId;
  }
}
