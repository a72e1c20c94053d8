import type pg from "pg";
import type { TxnId } from "../../ids.ts";
import type {
  InsertOutcome,
  LaneStats,
  NewOutboxRow,
  OutboxRow,
  OutboxState,
  OutboxStore,
  OutboxTotals,
  Settlement,
} from "../OutboxStore.ts";
import { toRow, type RawRow } from "../outboxRows.ts";
import { GroupCommit } from "./GroupCommit.ts";
import { inTransaction, withoutNul } from "./PgDatabase.ts";

/** The channel on which a commit names the lanes that got rows (`LISTEN`, see PgLaneLeases). */
export const OUTBOX_CHANNEL = "courier_outbox";

/**
 * Held by each insert transaction until its COMMIT: rows become visible in seq order, even from
 * several instances, so an owner that has read a lane up to a seq has seen every row below it.
 * "outbo" in ASCII.
 */
const INSERT_LOCK = 0x6f7574626f;

const COLUMNS =
  "seq, txn_id, lane, kind, sender, method, path, body, state, attempts, event_id, error::text AS error, created_at, settled_at";

// Named queries are prepared once per connection by pg.
const INSERT: pg.QueryConfig = {
  name: "courier-outbox-insert",
  // ORDER BY ordinality: the identity values are taken in the order of the rows, so seq follows
  // the enqueue order within the batch too. Each lane that got rows is notified (on COMMIT) to
  // the instances listening: its owner may be another one.
  text: `WITH added AS (
      INSERT INTO outbox (txn_id, lane, kind, sender, method, path, body, created_at)
      SELECT txn_id, lane, kind, sender, method, path, body, $8
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
        WITH ORDINALITY AS r (txn_id, lane, kind, sender, method, path, body, n)
      ORDER BY n
      ON CONFLICT (txn_id) DO NOTHING
      RETURNING seq, txn_id, created_at, lane
    ), notified AS (
      SELECT count(pg_notify('${OUTBOX_CHANNEL}', lane)) AS n FROM (SELECT DISTINCT lane FROM added) l
    )
    SELECT seq, txn_id, created_at FROM added, notified`,
};
const BY_TXN_IDS: pg.QueryConfig = {
  name: "courier-outbox-by-txn-ids",
  text: `SELECT ${COLUMNS} FROM outbox WHERE txn_id = ANY($1::text[])`,
};
// A dropped row that the homeserver accepted anyway ends up `sent`, which is the truth.
const SETTLE: pg.QueryConfig = {
  name: "courier-outbox-settle",
  text: `UPDATE outbox o SET state = s.state, event_id = s.event_id, error = s.error::jsonb,
      attempts = s.attempts, settled_at = $6
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::integer[]) AS s (seq, state, event_id, error, attempts)
    WHERE o.seq = s.seq AND (o.state = 'pending' OR (o.state = 'dropped' AND s.state = 'sent'))`,
};
const LOAD_LANE: pg.QueryConfig = {
  name: "courier-outbox-load-lane",
  text: `SELECT ${COLUMNS} FROM outbox WHERE lane = $1 AND state = 'pending' AND seq > $2 ORDER BY seq LIMIT $3`,
};

/**
 * The outbox store on PostgreSQL. Group commit: inserts submitted together (one turn of the
 * event loop, or while the previous commit is under way) go into one transaction as one
 * multi-row INSERT over UNNEST; each resolves after COMMIT. Settlements are grouped the same way
 * and committed before any read, so every read sees them.
 */
export class PgOutboxStore implements OutboxStore {
  readonly #pool: pg.Pool;
  readonly #inserts: GroupCommit<readonly NewOutboxRow[], InsertOutcome[]>;
  readonly #settles: GroupCommit<readonly Settlement[], undefined>;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
    this.#inserts = new GroupCommit((batches) => this.#insertAll(batches));
    this.#settles = new GroupCommit(async (batches) => {
      await this.#settleAll(batches.flat());
      return batches.map(() => undefined);
    });
  }

  insert(rows: readonly NewOutboxRow[]): Promise<InsertOutcome[]> {
    return rows.length === 0 ? Promise.resolve([]) : this.#inserts.submit(rows);
  }

  settle(settlements: readonly Settlement[]): Promise<void> {
    return this.#settles.submit(settlements);
  }

  async pendingLanes(): Promise<string[]> {
    await this.flush();
    const { rows } = await this.#pool.query<{ lane: string }>(
      "SELECT DISTINCT lane FROM outbox WHERE state = 'pending'",
    );
    return rows.map((r) => r.lane);
  }

  async loadLane(lane: string, afterSeq: number, limit: number): Promise<OutboxRow[]> {
    await this.flush();
    const { rows } = await this.#pool.query<RawRow>({ ...LOAD_LANE, values: [lane, afterSeq, limit] });
    return rows.map(toRow);
  }

  async get(txnId: TxnId): Promise<OutboxRow | undefined> {
    await this.flush();
    const { rows } = await this.#pool.query<RawRow>({ ...BY_TXN_IDS, values: [[txnId]] });
    return rows[0] && toRow(rows[0]);
  }

  async list(filter: { state?: OutboxState; lane?: string; limit: number }): Promise<OutboxRow[]> {
    await this.flush();
    const { rows } = await this.#pool.query<RawRow>(
      `SELECT ${COLUMNS} FROM outbox WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR lane = $2)
       ORDER BY seq DESC LIMIT $3`,
      [filter.state ?? null, filter.lane ?? null, filter.limit],
    );
    return rows.map(toRow);
  }

  async laneStats(): Promise<LaneStats[]> {
    await this.flush();
    const { rows } = await this.#pool.query<{ lane: string; pending: number; oldest: number }>(
      `SELECT lane, COUNT(*)::integer AS pending, MIN(created_at) AS oldest FROM outbox
       WHERE state = 'pending' GROUP BY lane ORDER BY pending DESC, lane COLLATE "C"`,
    );
    return rows.map((r) => ({ lane: r.lane, pending: r.pending, oldestCreatedAt: r.oldest }));
  }

  async totals(): Promise<OutboxTotals> {
    await this.flush();
    const { rows } = await this.#pool.query<{ state: string; n: number }>(
      "SELECT state, COUNT(*)::integer AS n FROM outbox GROUP BY state",
    );
    const count = (state: string) => rows.find((r) => r.state === state)?.n ?? 0;
    return { pending: count("pending"), sent: count("sent"), dead: count("dead") };
  }

  async requeue(txnIds: readonly TxnId[] | "all-dead"): Promise<number> {
    await this.flush();
    const sql = "UPDATE outbox SET state = 'pending', error = NULL, settled_at = NULL WHERE state = 'dead'";
    const result =
      txnIds === "all-dead"
        ? await this.#pool.query(sql)
        : await this.#pool.query(`${sql} AND txn_id = ANY($1::text[])`, [txnIds]);
    return result.rowCount ?? 0;
  }

  async drop(txnIds: readonly TxnId[]): Promise<number> {
    await this.flush();
    const result = await this.#pool.query(
      "UPDATE outbox SET state = 'dropped', settled_at = $2 WHERE state IN ('pending', 'dead') AND txn_id = ANY($1::text[])",
      [txnIds, Date.now()],
    );
    return result.rowCount ?? 0;
  }

  async prune(before: number): Promise<number> {
    await this.flush();
    const result = await this.#pool.query("DELETE FROM outbox WHERE state <> 'pending' AND settled_at < $1", [
      before,
    ]);
    return result.rowCount ?? 0;
  }

  async flush(): Promise<void> {
    await Promise.all([this.#inserts.idle(), this.#settles.idle()]);
  }

  async #insertAll(batches: ReadonlyArray<readonly NewOutboxRow[]>): Promise<InsertOutcome[][]> {
    const rows = batches.flat();
    const column = <T>(pick: (row: NewOutboxRow) => T) => rows.map(pick);
    return inTransaction(this.#pool, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [INSERT_LOCK]);
      const inserted = await client.query<{ seq: number; txn_id: string; created_at: number }>({
        ...INSERT,
        values: [
          column((r) => r.txnId),
          column((r) => r.lane),
          column((r) => r.kind),
          column((r) => r.sender),
          column((r) => r.request.method),
          column((r) => r.request.path),
          column((r) => r.request.body ?? null),
          Date.now(),
        ],
      });
      const fresh = new Map(inserted.rows.map((r) => [r.txn_id, r]));
      const others = rows.filter((r) => !fresh.has(r.txnId)).map((r) => r.txnId);
      const existing =
        others.length === 0
          ? new Map<string, RawRow>()
          : new Map(
              (await client.query<RawRow>({ ...BY_TXN_IDS, values: [others] })).rows.map((r) => [
                r.txn_id,
                r,
              ]),
            );
      return batches.map((batch) =>
        batch.map((row): InsertOutcome => {
          const mine = fresh.get(row.txnId);
          if (mine !== undefined) {
            fresh.delete(row.txnId); // the same txnId again in this batch is the existing row
            existing.set(row.txnId, { ...rawOf(row), seq: mine.seq, created_at: mine.created_at });
            return {
              inserted: true,
              row: {
                ...row,
                seq: mine.seq,
                state: "pending",
                attempts: 0,
                eventId: undefined,
                error: undefined,
                createdAt: mine.created_at,
                settledAt: undefined,
              },
            };
          }
          return { inserted: false, row: toRow(existing.get(row.txnId)!) };
        }),
      );
    });
  }

  async #settleAll(settlements: readonly Settlement[]): Promise<void> {
    if (settlements.length === 0) return;
    await this.#pool.query({
      ...SETTLE,
      values: [
        settlements.map((s) => s.seq),
        settlements.map((s) => s.state),
        settlements.map((s) => (s.state === "sent" ? (s.eventId ?? null) : null)),
        settlements.map((s) =>
          s.state === "dead"
            ? JSON.stringify(s.error, (_, v: unknown) => (typeof v === "string" ? withoutNul(v) : v))
            : null,
        ),
        settlements.map((s) => s.attempts),
        Date.now(),
      ],
    });
  }
}

/** A new row as a pending raw row (seq and time filled in by the caller). */
function rawOf(row: NewOutboxRow): RawRow {
  return {
    seq: 0,
    txn_id: row.txnId,
    lane: row.lane,
    kind: row.kind,
    sender: row.sender,
    method: row.request.method,
    path: row.request.path,
    body: row.request.body ?? null,
    state: "pending",
    attempts: 0,
    event_id: null,
    error: null,
    created_at: 0,
    settled_at: null,
  };
}
