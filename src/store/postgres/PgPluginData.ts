import type pg from "pg";
import type { PluginData, PluginStore } from "../PluginStore.ts";
import { refuseReserved } from "../reservedKeys.ts";
import { inTransaction } from "./PgDatabase.ts";

/** The framework's keys are refused, and keys PostgreSQL's text cannot hold (NUL), with a clear error. */
function refuseKey(key: string): void {
  refuseReserved(key);
  if (key.includes("\u0000"))
    throw new TypeError(
      `Expected a key without NUL (U+0000): PostgreSQL cannot store it, got ${JSON.stringify(key)}`,
    );
}

/** Plugins' key-value spaces and schedule slots in the framework's PostgreSQL database. */
export class PgPluginData implements PluginData {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  forPlugin(plugin: string): PluginStore {
    const pool = this.#pool;
    return {
      get: async <T>(key: string) => {
        refuseKey(key);
        const { rows } = await pool.query<{ value: string }>(
          "SELECT value FROM plugin_kv WHERE plugin = $1 AND key = $2",
          [plugin, key],
        );
        return rows[0] === undefined ? undefined : (JSON.parse(rows[0].value) as T);
      },
      set: async (key, value) => {
        refuseKey(key);
        const json = JSON.stringify(value);
        if (json === undefined)
          throw new TypeError(`Expected a JSON value for key "${key}", got ${typeof value}`);
        await pool.query(
          `INSERT INTO plugin_kv (plugin, key, value, updated_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
          [plugin, key, json, Date.now()],
        );
      },
      delete: async (key) => {
        refuseKey(key);
        const result = await pool.query("DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2", [
          plugin,
          key,
        ]);
        return (result.rowCount ?? 0) > 0;
      },
      list: async <T>(prefix = "") => {
        if (prefix.includes("\u0000")) return []; // no key holds one (refuseKey)
        // left(), not LIKE: a prefix may contain % or _.
        const { rows } = await pool.query<{ key: string; value: string }>(
          "SELECT key, value FROM plugin_kv WHERE plugin = $1 AND left(key, length($2)) = $2 ORDER BY key",
          [plugin, prefix],
        );
        return rows.map((row) => ({ key: row.key, value: JSON.parse(row.value) as T }));
      },
    };
  }

  async lastSlot(plugin: string, schedule: string): Promise<number | undefined> {
    const { rows } = await this.#pool.query<{ last_slot: number }>(
      "SELECT last_slot FROM plugin_schedules WHERE plugin = $1 AND name = $2",
      [plugin, schedule],
    );
    return rows[0]?.last_slot;
  }

  async saveSlot(plugin: string, schedule: string, slot: number): Promise<void> {
    await this.#pool.query(
      `INSERT INTO plugin_schedules (plugin, name, last_slot) VALUES ($1, $2, $3)
       ON CONFLICT (plugin, name) DO UPDATE SET last_slot = GREATEST(plugin_schedules.last_slot, excluded.last_slot),
         running_holder = NULL, running_until = NULL`,
      [plugin, schedule, slot],
    );
  }

  async claimSlot(
    plugin: string,
    schedule: string,
    slot: number,
    holder: string,
    now: number,
    until: number,
  ): Promise<"ours" | "done" | "busy"> {
    // Of two instances claiming at once, the second waits on the first's row lock, then finds
    // the claim live and updates nothing.
    const claimed = await this.#pool.query(
      `UPDATE plugin_schedules SET running_holder = $4, running_until = $6
       WHERE plugin = $1 AND name = $2 AND last_slot < $3
         AND (running_until IS NULL OR running_until < $5 OR running_holder = $4)`,
      [plugin, schedule, slot, holder, now, until],
    );
    if ((claimed.rowCount ?? 0) > 0) return "ours";
    const last = await this.lastSlot(plugin, schedule);
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
    return inTransaction(this.#pool, async (client) => {
      // Floored: a window may be fractional, and claimed_at (an integer) <= x is claimed_at <= floor(x).
      await client.query("DELETE FROM webhook_claims WHERE plugin = $1 AND route = $2 AND claimed_at <= $3", [
        plugin,
        route,
        Math.floor(now - windowMs),
      ]);
      // The claim and the read in one statement. Not DO NOTHING and a read: of two claims at once,
      // the second waits for the first's row, and its statement's snapshot, taken before that
      // commit, does not see it. A no-op DO UPDATE locks the row and returns it as committed
      // (INSERT's "atomic INSERT or UPDATE outcome" under READ COMMITTED, sql-insert.html).
      const { rows } = await client.query<{ delivery_id: string }>(
        `INSERT INTO webhook_claims (plugin, route, hash, delivery_id, claimed_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (plugin, route, hash) DO UPDATE SET delivery_id = webhook_claims.delivery_id
         RETURNING delivery_id`,
        [plugin, route, hash, deliveryId, now],
      );
      const first = rows[0]!.delivery_id;
      return first === deliveryId ? undefined : first;
    });
  }

  async releaseWebhookBody(plugin: string, route: string, hash: string, deliveryId: string): Promise<void> {
    await this.#pool.query(
      "DELETE FROM webhook_claims WHERE plugin = $1 AND route = $2 AND hash = $3 AND delivery_id = $4",
      [plugin, route, hash, deliveryId],
    );
  }
}
