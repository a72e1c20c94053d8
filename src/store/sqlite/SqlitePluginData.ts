import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { PluginData, PluginStore } from "../PluginStore.ts";
import { refuseReserved, RESERVED, WEBHOOK_BODY } from "../reservedKeys.ts";
import { openOrShare, type SqliteOptions } from "./SqliteDatabase.ts";

/** Plugins' key-value spaces and schedule slots in the framework's SQLite file. */
export class SqlitePluginData implements PluginData {
  readonly #db: DatabaseSync;
  readonly #owned: boolean;
  readonly #get: StatementSync;
  readonly #set: StatementSync;
  readonly #delete: StatementSync;
  readonly #list: StatementSync;
  readonly #lastSlot: StatementSync;
  readonly #saveSlot: StatementSync;
  readonly #claimSlot: StatementSync;
  readonly #pruneClaims: StatementSync;
  readonly #claim: StatementSync;
  readonly #release: StatementSync;

  constructor(source: SqliteOptions | DatabaseSync) {
    ({ db: this.#db, owned: this.#owned } = openOrShare(source));
    this.#get = this.#db.prepare("SELECT value FROM plugin_kv WHERE plugin = ? AND key = ?");
    this.#set = this.#db.prepare(
      `INSERT INTO plugin_kv (plugin, key, value, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
    );
    this.#delete = this.#db.prepare("DELETE FROM plugin_kv WHERE plugin = ? AND key = ?");
    // substr, not LIKE: a prefix may contain % or _.
    this.#list = this.#db.prepare(
      "SELECT key, value FROM plugin_kv WHERE plugin = ? AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
    );
    this.#lastSlot = this.#db.prepare("SELECT last_slot FROM plugin_schedules WHERE plugin = ? AND name = ?");
    this.#saveSlot = this.#db.prepare(
      `INSERT INTO plugin_schedules (plugin, name, last_slot) VALUES (?, ?, ?)
       ON CONFLICT (plugin, name) DO UPDATE SET last_slot = max(last_slot, excluded.last_slot),
         running_holder = NULL, running_until = NULL`,
    );
    this.#claimSlot = this.#db.prepare(
      `UPDATE plugin_schedules SET running_holder = ?4, running_until = ?6
       WHERE plugin = ?1 AND name = ?2 AND last_slot < ?3
         AND (running_until IS NULL OR running_until < ?5 OR running_holder = ?4)
       RETURNING 1`,
    );
    // A claim's time is its updated_at (the caller's clock); a range on the key, so the index serves it.
    this.#pruneClaims = this.#db.prepare(
      "DELETE FROM plugin_kv WHERE plugin = ? AND key >= ? AND key < ? AND updated_at <= ?",
    );
    this.#claim = this.#db.prepare(
      "INSERT INTO plugin_kv (plugin, key, value, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (plugin, key) DO NOTHING",
    );
    this.#release = this.#db.prepare(
      "DELETE FROM plugin_kv WHERE plugin = ? AND key = ? AND json_extract(value, '$.deliveryId') = ?",
    );
  }

  forPlugin(plugin: string): PluginStore {
    return {
      get: async <T>(key: string) => {
        refuseReserved(key);
        const row = this.#get.get(plugin, key) as { value: string } | undefined;
        return row === undefined ? undefined : (JSON.parse(row.value) as T);
      },
      set: async (key, value) => {
        refuseReserved(key);
        const json = JSON.stringify(value);
        if (json === undefined)
          throw new TypeError(`Expected a JSON value for key "${key}", got ${typeof value}`);
        this.#set.run(plugin, key, json, Date.now());
      },
      delete: async (key) => {
        refuseReserved(key);
        return Number(this.#delete.run(plugin, key).changes) > 0;
      },
      list: async <T>(prefix = "") =>
        (this.#list.all(plugin, prefix) as Array<{ key: string; value: string }>)
          .filter((row) => !row.key.startsWith(RESERVED))
          .map((row) => ({ key: row.key, value: JSON.parse(row.value) as T })),
    };
  }

  async lastSlot(plugin: string, schedule: string): Promise<number | undefined> {
    const row = this.#lastSlot.get(plugin, schedule) as { last_slot: number } | undefined;
    return row?.last_slot;
  }

  async saveSlot(plugin: string, schedule: string, slot: number): Promise<void> {
    this.#saveSlot.run(plugin, schedule, slot);
  }

  async claimSlot(
    plugin: string,
    schedule: string,
    slot: number,
    holder: string,
    now: number,
    until: number,
  ): Promise<"ours" | "done" | "busy"> {
    if (this.#claimSlot.get(plugin, schedule, slot, holder, now, until) !== undefined) return "ours";
    const last = (this.#lastSlot.get(plugin, schedule) as { last_slot: number } | undefined)?.last_slot;
    return last !== undefined && last >= slot ? "done" : "busy";
  }

  async claimWebhookBody(
    plugin: string,
    route: string,
    hash: string,
    deliveryId: string,
    now: number,
    windowMs: number,
  ): Promise<string | undefined> {
    // Synchronous from here to the end: no other request of this process runs in between.
    // A route has no ":" (loadPlugin checks its path), so `<route>:` to `<route>;` is its keys only.
    const routeKeys = `${WEBHOOK_BODY}${route}:`;
    this.#pruneClaims.run(plugin, routeKeys, `${WEBHOOK_BODY}${route};`, now - windowMs);
    const key = `${routeKeys}${hash}`;
    this.#claim.run(plugin, key, JSON.stringify({ deliveryId }), now);
    const row = this.#get.get(plugin, key) as { value: string };
    const first = (JSON.parse(row.value) as { deliveryId: string }).deliveryId;
    return first === deliveryId ? undefined : first;
  }

  async releaseWebhookBody(plugin: string, route: string, hash: string, deliveryId: string): Promise<void> {
    this.#release.run(plugin, `${WEBHOOK_BODY}${route}:${hash}`, deliveryId);
  }

  close(): void {
    if (this.#owned) this.#db.close();
  }
}
