/**
 * A plugin's own key-value space (`ctx.store`, `bot.store`) on the framework's database. Values
 * are JSON. Keys are the plugin's alone: another plugin's `get("x")` never sees them. Every
 * method does I/O and is committed when it resolves.
 *
 * Writes are not undone when a handler fails and runs again: write what is safe to write twice
 * (set a key derived from the event, not a counter += 1).
 */
export interface PluginStore {
  /** The value, or undefined when the key is not set. */
  get<T = unknown>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  /** True when the key was set. */
  delete(key: string): Promise<boolean>;
  /** Entries whose key starts with `prefix` (all when empty), in key order. */
  list<T = unknown>(prefix?: string): Promise<Array<{ key: string; value: T }>>;
}

/** What the plugin host keeps for its plugins: their key-value spaces and their schedules' last slots. */
export interface PluginData {
  forPlugin(plugin: string): PluginStore;
  /** The last slot (ms epoch) the schedule ran for; undefined before its first run. */
  lastSlot(plugin: string, schedule: string): Promise<number | undefined>;
  /** Records that the slot ran (the last slot never goes back), and ends its claim. */
  saveSlot(plugin: string, schedule: string, slot: number): Promise<void>;
  /**
   * Claims a slot for `holder` until `until` (ms epoch), so that of several instances one runs it:
   * "ours" when the slot is not run yet and nobody else holds a live claim (an expired claim, its
   * holder gone, is taken over); "done" when its last slot is this one or later; "busy" when
   * another holder's claim is live. The schedule must have a saved slot.
   */
  claimSlot(
    plugin: string,
    schedule: string,
    slot: number,
    holder: string,
    now: number,
    until: number,
  ): Promise<"ours" | "done" | "busy">;
  /**
   * Claims a signed webhook body (`hash`, on `route`: `POST /github`) for `deliveryId` at `now`
   * (ms epoch). Resolves the id of another delivery that claimed it on that route less than
   * `windowMs` ago: the body is a replay of that one. Else resolves undefined and the claim is
   * `deliveryId`'s (a claim of the same delivery is kept as it was, its time too). The route's
   * claims `windowMs` old or older are dropped.
   */
  claimWebhookBody(
    plugin: string,
    route: string,
    hash: string,
    deliveryId: string,
    now: number,
    windowMs: number,
  ): Promise<string | undefined>;
  /** Drops `deliveryId`'s claim of the body (its handler failed: a retry must run); another's stays. */
  releaseWebhookBody(plugin: string, route: string, hash: string, deliveryId: string): Promise<void>;
}
