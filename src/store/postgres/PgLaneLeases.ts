import { createHash, randomUUID } from "node:crypto";
import type pg from "pg";
import { pino, type Logger } from "pino";
import type { LaneOwnership, LaneOwnershipEvents } from "../../inbound/LaneOwnership.ts";
import { INBOUND_CHANNEL } from "./PgInboundJournal.ts";
import { OUTBOX_CHANNEL } from "./PgOutboxStore.ts";

/** What is leased: outbox lanes (sending) or inbound lanes (dispatching to the plugins). */
export type LeasedWork = "outbox" | "inbound";

/** Per kind of work: its lanes with something pending, and the channel its commits notify. */
const WORK: Record<LeasedWork, { pendingLanes: string; channel: string }> = {
  outbox: {
    pendingLanes: "SELECT DISTINCT lane FROM outbox WHERE state = 'pending'",
    channel: OUTBOX_CHANNEL,
  },
  inbound: {
    pendingLanes: "SELECT DISTINCT i.lane FROM inbound_pending p JOIN inbound_items i ON i.seq = p.seq",
    channel: INBOUND_CHANNEL,
  },
};

export interface PgLaneLeasesOptions {
  /** @default "outbox" */
  readonly work?: LeasedWork;
  /** This instance's name in the lease table. @default a random UUID */
  readonly instanceId?: string;
  /** How long a lease lasts without renewal: the takeover time after a crash. @default 5000 */
  readonly leaseMs?: number;
  readonly logger?: Logger;
}

export const LANE_LEASE_DEFAULTS = { leaseMs: 5000 } as const;

/** Milliseconds on the database's clock: every instance's lease is measured on one clock. */
const DB_NOW = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

const CLAIM = `INSERT INTO lane_leases (lane, owner, expires_at)
  SELECT $4 || lane, $2, ${DB_NOW} + $3 FROM unnest($1::text[]) AS l (lane)
  ON CONFLICT (lane) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
    WHERE lane_leases.expires_at < ${DB_NOW} OR lane_leases.owner = excluded.owner
  RETURNING substr(lane, length($4) + 1) AS lane`;

/**
 * Outbox or inbound lanes leased to instances in a table (`lane_leases`), on the database's clock. Every
 * third of the lease time an instance renews its leases, gives back the lanes it has nothing to
 * send in and those above its fair share (pending lanes / live instances, so a new instance gets
 * its share), and takes free or expired ones up to that share. An instance trusts its leases
 * for two thirds of the lease time after the renewal began, so it stops sending a lane before
 * another can take it over. New rows are announced by `NOTIFY` on commit (PgOutboxStore) and
 * heard here on a connection of its own.
 *
 * A table rather than advisory locks: a lease outlives a stalled but connected process only
 * until it expires, the takeover time is a setting, and who owns what is a query away.
 */
export class PgLaneLeases implements LaneOwnership {
  readonly instanceId: string;
  readonly #pool: pg.Pool;
  /** The lease table's keys of this work start with it: `outbox:` or `inbound:`. */
  readonly #prefix: string;
  readonly #work: (typeof WORK)[LeasedWork];
  readonly #leaseMs: number;
  readonly #log: Logger;
  #owned = new Set<string>();
  /** Until when (performance.now()) the leases in `#owned` may be trusted. */
  #trustedUntil = 0;
  #events: LaneOwnershipEvents | undefined;
  #listener: pg.PoolClient | undefined;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #stopped = false;
  /** Live instances at the last renewal: which of them takes a lane announced with no owner. */
  #liveIds: string[] = [];
  readonly #claiming = new Set<string>();

  constructor(pool: pg.Pool, options: PgLaneLeasesOptions = {}) {
    this.#pool = pool;
    const work = options.work ?? "outbox";
    this.#prefix = `${work}:`;
    this.#work = WORK[work];
    this.instanceId = options.instanceId ?? randomUUID();
    this.#leaseMs = options.leaseMs ?? LANE_LEASE_DEFAULTS.leaseMs;
    this.#log = options.logger ?? pino({ level: "silent" });
  }

  ownedCount(): number {
    return performance.now() < this.#trustedUntil ? this.#owned.size : 0;
  }

  owns(lane: string): boolean {
    return this.#owned.has(lane) && performance.now() < this.#trustedUntil;
  }

  async claim(lane: string): Promise<boolean> {
    const began = performance.now();
    const { rows } = await this.#pool.query<{ lane: string }>(CLAIM, [
      [lane],
      this.instanceId,
      this.#leaseMs,
    ]);
    if (rows.length === 0) return false;
    this.#owned.add(lane);
    // A lone claim does not extend the trust of the others; a first one starts it.
    if (this.#owned.size === 1) this.#trustedUntil = began + (this.#leaseMs * 2) / 3;
    return true;
  }

  async start(events: LaneOwnershipEvents): Promise<void> {
    this.#events = events;
    this.#stopped = false;
    await this.#listen();
    await this.#tick();
    this.#timer = setInterval(() => void this.#tick(), this.#leaseMs / 3);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#ticking;
    this.#listener?.release(true);
    this.#listener = undefined;
    this.#owned.clear();
    await this.#pool.query("DELETE FROM lane_leases WHERE owner = $1 AND starts_with(lane, $2)", [
      this.instanceId,
      this.#prefix,
    ]);
    // No longer counted among the live instances when shares are computed (the instance's other
    // kind of work, if still running, counts it again at its next renewal).
    await this.#pool.query("DELETE FROM courier_instances WHERE id = $1", [this.instanceId]);
  }

  /** Lanes this instance holds, as the database says (metrics, dashboard). Does I/O. */
  async leases(): Promise<Array<{ lane: string; owner: string; expiresInMs: number }>> {
    const { rows } = await this.#pool.query<{ lane: string; owner: string; expires_in: number }>(
      `SELECT lane, owner, expires_at - ${DB_NOW} AS expires_in FROM lane_leases ORDER BY lane`,
    );
    return rows.map((r) => ({ lane: r.lane, owner: r.owner, expiresInMs: r.expires_in }));
  }

  #tick(): Promise<void> {
    if (this.#ticking || this.#stopped) return this.#ticking ?? Promise.resolve();
    this.#ticking = this.#renewAndBalance()
      .catch((error: unknown) => this.#log.warn({ err: error }, "could not renew the lane leases; retrying"))
      .finally(() => (this.#ticking = undefined));
    return this.#ticking;
  }

  async #renewAndBalance(): Promise<void> {
    if (this.#listener === undefined) await this.#listen();
    const began = performance.now();
    const id = this.instanceId;
    const lease = this.#leaseMs;
    await this.#pool.query(
      `INSERT INTO courier_instances (id, seen_at) VALUES ($1, ${DB_NOW})
       ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at`,
      [id],
    );
    const renewed = await this.#pool.query<{ lane: string }>(
      `UPDATE lane_leases SET expires_at = ${DB_NOW} + $2 WHERE owner = $1 AND starts_with(lane, $3)
       RETURNING substr(lane, length($3) + 1) AS lane`,
      [id, lease, this.#prefix],
    );
    const owned = new Set(renewed.rows.map((r) => r.lane));
    this.#owned = owned;
    this.#trustedUntil = began + (lease * 2) / 3;

    this.#liveIds = (
      await this.#pool.query<{ id: string }>(
        `SELECT id FROM courier_instances WHERE seen_at > ${DB_NOW} - $1`,
        [lease],
      )
    ).rows.map((r) => r.id);
    const live = Math.max(1, this.#liveIds.length);
    const { rows } = await this.#pool.query<{ lane: string; owner: string | null }>(
      `SELECT p.lane, l.owner FROM (${this.#work.pendingLanes}) p
       LEFT JOIN lane_leases l ON l.lane = $1 || p.lane AND l.expires_at >= ${DB_NOW}`,
      [this.#prefix],
    );
    const pending = new Set(rows.map((r) => r.lane));
    const share = Math.ceil(pending.size / live);
    // A lane in the middle of something is kept, first: its next owner would send or run it again.
    const busy = (lane: string) => this.#events?.busy(lane) ?? false;
    const withWork = [...owned]
      .filter((lane) => pending.has(lane))
      .sort((a, b) => Number(busy(b)) - Number(busy(a)) || a.localeCompare(b));
    const giveBack = [...[...owned].filter((lane) => !pending.has(lane)), ...withWork.slice(share)].filter(
      (lane) => !busy(lane),
    );
    if (giveBack.length > 0) {
      // Not ours from now on, before the lease is gone: nothing new starts in them meanwhile.
      for (const lane of giveBack) owned.delete(lane);
      await this.#pool.query(
        "DELETE FROM lane_leases WHERE owner = $1 AND lane = ANY(SELECT $2 || l FROM unnest($3::text[]) AS l)",
        [id, this.#prefix, giveBack],
      );
    }
    const free = rows.filter((r) => r.owner === null).map((r) => r.lane);
    const wanted = free.slice(0, Math.max(0, share - withWork.length));
    if (wanted.length > 0) {
      const claimed = await this.#pool.query<{ lane: string }>(CLAIM, [wanted, id, lease, this.#prefix]);
      for (const { lane } of claimed.rows) owned.add(lane);
      if (claimed.rows.length > 0) this.#log.info({ lanes: claimed.rows.length }, "lanes taken over");
    }
    if (!this.#stopped) this.#events?.owned([...owned].filter((lane) => pending.has(lane)));
  }

  /**
   * A lane got rows and this instance does not hold it: when this instance is the lane's
   * preferred one among the live instances (rendezvous hashing: each lane has one, and the lanes
   * spread evenly), it takes a free lease now rather than at the next renewal, so a new room's
   * first message waits for no renewal. An owner, if any, keeps the lane.
   */
  async #claimAnnounced(lane: string): Promise<void> {
    if (this.#stopped || this.#claiming.has(lane)) return;
    if (this.#liveIds.length > 0 && preferredOwner(lane, this.#liveIds) !== this.instanceId) return;
    this.#claiming.add(lane);
    try {
      if (await this.claim(lane)) this.#events?.grew([lane]);
    } catch (error) {
      this.#log.warn({ err: error, lane }, "could not claim an announced lane; the next renewal will");
    } finally {
      this.#claiming.delete(lane);
    }
  }

  async #listen(): Promise<void> {
    const client = await this.#pool.connect();
    client.on("notification", (message) => {
      if (message.channel !== this.#work.channel || !message.payload) return;
      const lane = message.payload;
      if (this.#owned.has(lane)) this.#events?.grew([lane]);
      else void this.#claimAnnounced(lane);
    });
    // A lost connection: listen again at the next renewal (which also sends what was missed).
    client.on("error", (error) => {
      this.#log.warn({ err: error }, "lost the connection that listens for new rows");
      if (this.#listener === client) this.#listener = undefined;
      client.release(true);
    });
    await client.query(`LISTEN ${this.#work.channel}`);
    this.#listener = client;
  }
}

/** The live instance that a lane prefers: the highest hash of (instance, lane). */
function preferredOwner(lane: string, instanceIds: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = "";
  for (const id of instanceIds) {
    const score = createHash("sha1").update(id).update("\u0000").update(lane).digest("hex");
    if (score > bestScore) [best, bestScore] = [id, score];
  }
  return best;
}

/** The instances seen in the last minute and the lane leases held (`courier doctor`). Does I/O. */
export async function inspectLeases(pool: pg.Pool): Promise<{ liveInstances: number; leases: number }> {
  const { rows } = await pool.query<{ live: number; leases: number }>(
    `SELECT (SELECT count(*)::integer FROM courier_instances WHERE seen_at > ${DB_NOW} - 60000) AS live,
       (SELECT count(*)::integer FROM lane_leases WHERE expires_at >= ${DB_NOW}) AS leases`,
  );
  return { liveInstances: rows[0]!.live, leases: rows[0]!.leases };
}
