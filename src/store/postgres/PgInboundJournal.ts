import type pg from "pg";
import type {
  InboundItem,
  InboundRecord,
  InboundRecordBatch,
  InboundSettlement,
  InboundState,
  InboundJournal,
  JournalOutcome,
  NewInboundItem,
  PendingRead,
} from "../../inbound/InboundJournal.ts";
import {
  PENDING_COLUMNS,
  RECORD_COLUMNS,
  toItem,
  toRecord,
  type RawItem,
  type RawRecord,
} from "../inboundRows.ts";
import { inTransaction, withoutNul } from "./PgDatabase.ts";

const NOT_PENDING = "NOT EXISTS (SELECT 1 FROM inbound_pending p WHERE p.seq = inbound_items.seq)";

/** The channel on which a journal commit names the lanes that got items (see PgLaneLeases). */
export const INBOUND_CHANNEL = "courier_inbound";

/** Serialises journal commits across every instance on the database: "inbou" in ASCII. */
const JOURNAL_LOCK = 0x696e626f75;

const JOURNAL: pg.QueryConfig = {
  name: "courier-inbound-journal",
  // One statement: the new items (a key the journal holds already is skipped), and the pending
  // row of each that is not rejected, with its first dispatch counted.
  text: `WITH added AS (
      INSERT INTO inbound_items (seq, item_key, txn_id, kind, lane, event_id, json, received_at, state, error, settled_at)
      SELECT seq, item_key, $9, kind, lane, event_id, json, $10, state, error,
        CASE WHEN state IS NULL THEN NULL ELSE $10::bigint END
      FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
        AS r (seq, item_key, kind, lane, event_id, json, state, error)
      ORDER BY seq
      ON CONFLICT (item_key) DO NOTHING
      RETURNING seq, state
    ), pending AS (
      INSERT INTO inbound_pending (seq, attempts) SELECT seq, 1 FROM added WHERE state IS NULL RETURNING seq
    ), notified AS (
      SELECT count(pg_notify('${INBOUND_CHANNEL}', lane)) AS n
      FROM (SELECT DISTINCT i.lane FROM unnest($1::bigint[], $4::text[]) AS i (seq, lane) JOIN pending p ON p.seq = i.seq) l
    )
    SELECT seq, state FROM added, notified`,
};

/**
 * The inbound journal on PostgreSQL: the same rows and rules as the SQLite journal. Seqs are
 * given under an advisory transaction lock, from a mark committed with the items, so items
 * become visible in seq order even when several instances journal at once: a dispatcher that
 * has read up to the mark has seen every item below it.
 */
export class PgInboundJournal implements InboundJournal {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async journal(txnId: string, items: readonly NewInboundItem[]): Promise<JournalOutcome> {
    return inTransaction(this.#pool, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [JOURNAL_LOCK]);
      const afterSeq = (await client.query<{ last_seq: number }>("SELECT last_seq FROM inbound_mark"))
        .rows[0]!.last_seq;
      const seqs = items.map((_, i) => afterSeq + 1 + i);
      const upToSeq = afterSeq + items.length;
      const { rows } = await client.query<{ seq: number; state: string | null }>({
        ...JOURNAL,
        values: [
          seqs,
          items.map((i) => i.key),
          items.map((i) => i.kind),
          items.map((i) => i.lane),
          items.map((i) => i.eventId ?? null),
          items.map((i) => i.json),
          items.map((i) => (i.rejected === undefined ? null : "rejected")),
          items.map((i) => i.rejected ?? null),
          txnId,
          Date.now(),
        ],
      });
      if (items.length > 0) await client.query("UPDATE inbound_mark SET last_seq = $1", [upToSeq]);
      const added = new Map(rows.map((r) => [r.seq, r.state]));
      const journaled: InboundItem[] = [];
      let rejected = 0;
      items.forEach((item, i) => {
        const seq = seqs[i]!;
        if (!added.has(seq)) return;
        if (added.get(seq) !== null) rejected++;
        else journaled.push({ ...item, seq, txnId, attempts: 1 });
      });
      return {
        items: journaled,
        rejected,
        duplicates: items.length - added.size,
        afterSeq,
        upToSeq,
      };
    });
  }

  async pending(afterSeq: number, limit: number): Promise<PendingRead> {
    // The mark first: an item committed after it was read is above it, and read next time.
    const mark = await this.lastSeq();
    const { rows } = await this.#pool.query<RawItem>(
      `SELECT ${PENDING_COLUMNS} FROM inbound_pending p JOIN inbound_items i ON i.seq = p.seq
       WHERE p.seq > $1 AND p.seq <= $2 ORDER BY p.seq LIMIT $3`,
      [afterSeq, mark, limit],
    );
    const items = rows.map(toItem);
    return { items, readUpTo: items.length === limit ? items[items.length - 1]!.seq : mark };
  }

  async lastSeq(): Promise<number> {
    const { rows } = await this.#pool.query<{ last_seq: number }>("SELECT last_seq FROM inbound_mark");
    return rows[0]!.last_seq;
  }

  async pendingInLane(
    lane: string,
    afterSeq: number,
    upToSeq: number,
    limit: number,
  ): Promise<InboundItem[]> {
    const { rows } = await this.#pool.query<RawItem>(
      `SELECT ${PENDING_COLUMNS} FROM inbound_pending p JOIN inbound_items i ON i.seq = p.seq
       WHERE p.seq > $1 AND p.seq <= $2 AND i.lane = $3 ORDER BY p.seq LIMIT $4`,
      [afterSeq, upToSeq, lane, limit],
    );
    return rows.map(toItem);
  }

  /** Counts begun dispatches and records outcomes; an item already settled keeps its first outcome. */
  async record(batch: InboundRecordBatch): Promise<void> {
    if (batch.begun.length === 0 && batch.settled.length === 0) return;
    // An UPDATE changes a row once however often its seq is listed: count each seq's dispatches here.
    const begun = new Map<number, number>();
    for (const seq of batch.begun) begun.set(seq, (begun.get(seq) ?? 0) + 1);
    // A seq settled twice in the batch keeps its first outcome, as across batches.
    const settled = new Map<number, InboundSettlement>();
    for (const s of batch.settled) if (!settled.has(s.seq)) settled.set(s.seq, s);
    const dead = [...settled.values()].filter((s) => s.state === "dead");
    await inTransaction(this.#pool, async (client) => {
      if (begun.size > 0)
        await client.query(
          `UPDATE inbound_pending p SET attempts = p.attempts + b.n
           FROM unnest($1::bigint[], $2::integer[]) AS b (seq, n) WHERE p.seq = b.seq`,
          [[...begun.keys()], [...begun.values()]],
        );
      if (settled.size === 0) return;
      await client.query(
        `WITH handled AS (DELETE FROM inbound_pending WHERE seq = ANY($1::bigint[]) RETURNING seq, attempts)
         UPDATE inbound_items i SET state = 'dead', error = d.error, attempts = h.attempts, settled_at = $4
         FROM handled h JOIN unnest($2::bigint[], $3::text[]) AS d (seq, error) ON d.seq = h.seq
         WHERE i.seq = h.seq`,
        [
          [...settled.keys()],
          dead.map((s) => s.seq),
          dead.map((s) => (s.error === undefined ? null : withoutNul(s.error))),
          Date.now(),
        ],
      );
    });
  }

  async list(filter: { state?: Exclude<InboundState, "pending">; limit: number }): Promise<InboundRecord[]> {
    const where =
      filter.state === undefined
        ? NOT_PENDING
        : filter.state === "done"
          ? `state IS NULL AND ${NOT_PENDING}`
          : "state = $2";
    const { rows } = await this.#pool.query<RawRecord>(
      `SELECT ${RECORD_COLUMNS} FROM inbound_items WHERE ${where} ORDER BY seq DESC LIMIT $1`,
      filter.state === undefined || filter.state === "done" ? [filter.limit] : [filter.limit, filter.state],
    );
    return rows.map(toRecord);
  }

  async totals(): Promise<Record<InboundState, number>> {
    const { rows } = await this.#pool.query<{
      pending: number;
      open: number;
      dead: number;
      rejected: number;
    }>(
      `SELECT (SELECT COUNT(*) FROM inbound_pending)::integer AS pending,
         (SELECT COUNT(*) FROM inbound_items WHERE state IS NULL)::integer AS open,
         (SELECT COUNT(*) FROM inbound_items WHERE state = 'dead')::integer AS dead,
         (SELECT COUNT(*) FROM inbound_items WHERE state = 'rejected')::integer AS rejected`,
    );
    const t = rows[0]!;
    return { pending: t.pending, done: t.open - t.pending, dead: t.dead, rejected: t.rejected };
  }

  async prune(before: number): Promise<number> {
    const result = await this.#pool.query(
      `DELETE FROM inbound_items WHERE COALESCE(settled_at, received_at) < $1 AND ${NOT_PENDING}`,
      [before],
    );
    return result.rowCount ?? 0;
  }
}
