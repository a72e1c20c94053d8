import type { DatabaseSync, StatementSync } from "node:sqlite";
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
import { openOrShare, type SqliteOptions } from "./SqliteDatabase.ts";
import { PendingByLane } from "./PendingByLane.ts";
import { KeyIndexFile, OUTBOX_TXN_KEYS } from "./KeyIndexFile.ts";
import { txnKey } from "./txnKey.ts";
import { toRow, withSettlement, type RawRow } from "../outboxRows.ts";

/** The columns of a row, but its lane. */
const OWN_COLUMNS = `seq, txn_id, kind, sender, method, path, body, state, attempts, event_id, error, created_at,
  settled_at`;
/** The columns of a row, its lane by name. */
const COLUMNS = `${OWN_COLUMNS}, (SELECT name FROM outbox_lanes WHERE id = lane_id) AS lane`;

interface PendingInsert {
  readonly rows: readonly NewOutboxRow[];
  readonly resolve: (outcomes: InsertOutcome[]) => void;
  readonly reject: (error: unknown) => void;
}

const SETTLE_DELAY_MS = 50;
const MAX_INSERT_WAIT_MS = 1;

/**
 * The outbox store on node:sqlite. Group commit: the inserts that arrive in the same turn of
 * the event loop go into one transaction, flushed on `setImmediate` (or earlier, once per turn,
 * when they have waited 1 ms), so a burst costs one commit instead of one per message.
 * Settlements ride along with the next insert commit, or are committed on their own after
 * `SETTLE_DELAY_MS`: losing one in a crash only means a replay that the homeserver deduplicates.
 */
export class SqliteOutboxStore implements OutboxStore {
  readonly #db: DatabaseSync;
  readonly #ownsDb: boolean;
  readonly #insert: StatementSync;
  readonly #keys: KeyIndexFile<bigint>;
  readonly #bySeq: StatementSync;
  readonly #byTxnIdAfter: StatementSync;
  readonly #settleSent: StatementSync;
  readonly #settleDead: StatementSync;
  readonly #allPending: StatementSync;
  readonly #pendingBySeqs: StatementSync;
  /** Built at the first need, and again after an operator's requeue or drop. */
  #pending: PendingByLane | undefined;
  /**
   * Rows the transaction under way inserted: for `#pending` once it commits, and the last is the
   * key index's new mark.
   */
  #added: Array<{ laneId: number; seq: number; id: string }> = [];
  readonly #maxSeq: StatementSync;
  // Prepared once: exec() parses the SQL on every call.
  readonly #begin: StatementSync;
  readonly #commit: StatementSync;
  #inserts: PendingInsert[] = [];
  /** Settlements not yet committed, by txnId; `get` reads through them. */
  #settlements = new Map<string, Settlement>();
  #settleWaiters: Array<{ resolve: () => void; reject: (error: unknown) => void }> = [];
  #flushScheduled = false;
  /** When the oldest insert not yet committed arrived (performance.now()). */
  #waitingSince = 0;
  /** An overdue flush ran in this turn of the event loop. */
  #overdueFlushed = false;
  readonly #laneIds = new Map<string, number>();
  readonly #laneId: StatementSync;
  readonly #addLane: StatementSync;
  #settleTimer: NodeJS.Timeout | undefined;

  /** Opens (and migrates) the file, or wraps a database another store already opened. */
  constructor(source: SqliteOptions | DatabaseSync) {
    ({ db: this.#db, owned: this.#ownsDb } = openOrShare(source));
    this.#insert = this.#db.prepare(
      `INSERT INTO outbox (seq, txn_key, txn_id, lane_id, kind, sender, method, path, body, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#keys = new KeyIndexFile(this.#db, OUTBOX_TXN_KEYS);
    this.#bySeq = this.#db.prepare(`SELECT ${COLUMNS} FROM outbox WHERE seq = ?`);
    this.#byTxnIdAfter = this.#db.prepare(`SELECT ${COLUMNS} FROM outbox WHERE seq > ? AND txn_id = ?`);
    this.#begin = this.#db.prepare("BEGIN IMMEDIATE");
    this.#commit = this.#db.prepare("COMMIT");
    this.#maxSeq = this.#db.prepare("SELECT max(seq) AS seq FROM outbox");
    this.#laneId = this.#db.prepare("SELECT id FROM outbox_lanes WHERE name = ?");
    this.#addLane = this.#db.prepare("INSERT INTO outbox_lanes (name) VALUES (?) RETURNING id");
    this.#settleSent = this.#db.prepare(
      "UPDATE outbox SET state = 'sent', event_id = ?, attempts = ?, settled_at = ? WHERE seq = ? AND state IN ('pending', 'dropped')",
    );
    this.#settleDead = this.#db.prepare(
      "UPDATE outbox SET state = 'dead', error = ?, attempts = ?, settled_at = ? WHERE seq = ? AND state = 'pending'",
    );
    this.#pendingBySeqs = this.#db.prepare(
      // The lane is the caller's: a lookup of its name per row would cost more than the row.
      `SELECT ${OWN_COLUMNS}, ?1 AS lane FROM outbox WHERE seq IN (SELECT value FROM json_each(?2)) AND state = 'pending'
       ORDER BY seq`,
    );
    // One JSON array per lane: a large backlog loads much faster than as row objects.
    this.#allPending = this.#db.prepare(
      "SELECT lane_id, json_group_array(seq ORDER BY seq) AS seqs FROM outbox WHERE state = 'pending' GROUP BY lane_id",
    );
  }

  insert(rows: readonly NewOutboxRow[]): Promise<InsertOutcome[]> {
    return new Promise((resolve, reject) => {
      if (this.#inserts.length === 0) this.#waitingSince = performance.now();
      this.#inserts.push({ rows, resolve, reject });
      this.#scheduleFlush();
      this.#flushIfOverdue();
    });
  }

  settle(settlements: readonly Settlement[]): Promise<void> {
    for (const s of settlements) {
      this.#settlements.set(s.txnId, s);
      // No longer pending for loadLane, committed or not.
      const laneId = this.#pending ? this.#laneIdOf(s.lane, false) : undefined;
      if (laneId !== undefined) this.#pending?.remove(laneId, s.seq);
    }
    this.#settleTimer ??= setTimeout(() => this.#scheduleFlush(), SETTLE_DELAY_MS);
    this.#flushIfOverdue();
    return new Promise((resolve, reject) => this.#settleWaiters.push({ resolve, reject }));
  }

  async pendingLanes(): Promise<string[]> {
    const rows = this.#db
      .prepare(
        "SELECT name FROM outbox_lanes WHERE id IN (SELECT DISTINCT lane_id FROM outbox WHERE state = 'pending')",
      )
      .all() as Array<{ name: string }>;
    return rows.map((r) => r.name);
  }

  async loadLane(lane: string, afterSeq: number, limit: number): Promise<OutboxRow[]> {
    const laneId = this.#laneIdOf(lane, false);
    if (laneId === undefined) return [];
    const pending = this.#pendingByLane();
    const rows: OutboxRow[] = [];
    let after = afterSeq;
    for (;;) {
      const wanted = limit - rows.length;
      const seqs = pending.after(laneId, after, wanted);
      const found = this.#pendingBySeqs.all(lane, JSON.stringify(seqs)) as unknown as RawRow[];
      if (found.length < seqs.length) {
        // Listed but no longer pending (the list is one writer's view; a guard, not a path).
        const still = new Set(found.map((raw) => raw.seq));
        for (const seq of seqs) if (!still.has(seq)) pending.remove(laneId, seq);
      }
      for (const raw of found) rows.push(toRow(raw));
      if (seqs.length < wanted || rows.length === limit) return rows;
      after = seqs[seqs.length - 1] as number;
    }
  }

  async get(txnId: TxnId): Promise<OutboxRow | undefined> {
    const raw = this.#find(txnId);
    return raw && this.#current(raw);
  }

  async list(filter: { state?: OutboxState; lane?: string; limit: number }): Promise<OutboxRow[]> {
    await this.flush();
    // NULL matches anything, so one statement serves every combination of filters.
    const sql = `SELECT ${COLUMNS} FROM outbox WHERE (?1 IS NULL OR state = ?1)
      AND (?2 IS NULL OR lane_id = (SELECT id FROM outbox_lanes WHERE name = ?2)) ORDER BY seq DESC LIMIT ?3`;
    const rows = this.#db
      .prepare(sql)
      .all(filter.state ?? null, filter.lane ?? null, filter.limit) as unknown as RawRow[];
    return rows.map(toRow);
  }

  async laneStats(): Promise<LaneStats[]> {
    await this.flush();
    const rows = this.#db
      .prepare(
        `SELECT l.name AS lane, COUNT(*) AS pending, MIN(o.created_at) AS oldest FROM outbox o
         JOIN outbox_lanes l ON l.id = o.lane_id WHERE o.state = 'pending' GROUP BY l.name ORDER BY pending DESC, lane`,
      )
      .all() as Array<{ lane: string; pending: number; oldest: number }>;
    return rows.map((r) => ({ lane: r.lane, pending: r.pending, oldestCreatedAt: r.oldest }));
  }

  async totals(): Promise<OutboxTotals> {
    await this.flush();
    const rows = this.#db.prepare("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state").all() as Array<{
      state: string;
      n: number;
    }>;
    const count = (state: string) => rows.find((r) => r.state === state)?.n ?? 0;
    return { pending: count("pending"), sent: count("sent"), dead: count("dead") };
  }

  async requeue(txnIds: readonly TxnId[] | "all-dead"): Promise<number> {
    await this.flush();
    const sql = "UPDATE outbox SET state = 'pending', error = NULL, settled_at = NULL WHERE state = 'dead'";
    this.#pending = undefined; // rows come back to their lanes, in the middle: listed again
    if (txnIds === "all-dead") return Number(this.#db.prepare(sql).run().changes);
    const one = this.#db.prepare(`${sql} AND seq = ?`);
    return this.#transaction(() =>
      this.#seqsOf(txnIds).reduce((n, seq) => n + Number(one.run(seq).changes), 0),
    );
  }

  async drop(txnIds: readonly TxnId[]): Promise<number> {
    await this.flush();
    const one = this.#db.prepare(
      "UPDATE outbox SET state = 'dropped', settled_at = ? WHERE state IN ('pending', 'dead') AND seq = ?",
    );
    const now = Date.now();
    this.#pending = undefined;
    return this.#transaction(() =>
      this.#seqsOf(txnIds).reduce((n, seq) => n + Number(one.run(now, seq).changes), 0),
    );
  }

  async prune(before: number): Promise<number> {
    await this.flush();
    this.#keys.beginWriting();
    const prune = this.#db.prepare(
      "DELETE FROM outbox WHERE state != 'pending' AND settled_at < ? RETURNING seq, txn_key",
    );
    prune.setReadBigInts(true);
    return this.#transaction(() => {
      const gone = prune.all(before) as Array<{ seq: bigint; txn_key: bigint }>;
      this.#keys.forget(gone.map((row) => ({ seq: Number(row.seq), key: row.txn_key })));
      return gone.length;
    });
  }

  flush(): Promise<void> {
    if (!this.#flushScheduled && this.#settlements.size === 0) return Promise.resolve();
    this.#scheduleFlush();
    return new Promise((resolve, reject) => this.#settleWaiters.push({ resolve, reject }));
  }

  /** Commits what is buffered and closes the file (when this store opened it). */
  async close(): Promise<void> {
    await this.flush();
    await this.#keys.close();
    if (this.#ownsDb) this.#db.close();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#overdueFlushed = false;
      this.#flush();
    });
  }

  /**
   * Commits now (at the end of the current callback) when inserts have waited MAX_INSERT_WAIT_MS:
   * under load one turn of the event loop takes several ms of HTTP work, and an enqueue should
   * not wait for all of it. Checked whenever the store is called, which a busy outbox does often.
   * At most once a turn: handlers that await each enqueue would otherwise go on flushing and
   * enqueuing without ever letting an HTTP response in.
   */
  #flushIfOverdue(): void {
    if (this.#overdueFlushed || this.#inserts.length === 0) return;
    if (performance.now() - this.#waitingSince < MAX_INSERT_WAIT_MS) return;
    this.#overdueFlushed = true;
    process.nextTick(() => this.#flush());
  }

  #flush(): void {
    this.#flushScheduled = false;
    clearTimeout(this.#settleTimer);
    this.#settleTimer = undefined;
    const inserts = this.#inserts;
    const settlements = this.#settlements;
    const waiters = this.#settleWaiters;
    if (inserts.length === 0 && settlements.size === 0) {
      this.#settleWaiters = [];
      for (const w of waiters) w.resolve();
      return;
    }
    this.#inserts = [];
    this.#settleWaiters = [];
    const now = Date.now();
    let outcomes: InsertOutcome[][];
    try {
      if (inserts.length > 0) this.#keys.beginWriting();
      outcomes = this.#transaction(() => {
        // Seqs are assigned here, as SQLite would (max + 1): `RETURNING seq` makes an insert dearer.
        let seq = (this.#maxSeq.get() as { seq: number | null }).seq ?? 0;
        const result = inserts.map((batch) =>
          batch.rows.map((row) => {
            const outcome = this.#insertRow(row, seq + 1, now);
            if (outcome.inserted) seq++;
            return outcome;
          }),
        );
        for (const s of settlements.values()) {
          if (s.state === "sent") this.#settleSent.run(s.eventId ?? null, s.attempts, now, s.seq);
          else this.#settleDead.run(JSON.stringify(s.error), s.attempts, now, s.seq);
        }
        return result;
      });
    } catch (error) {
      // Nothing of this batch is committed: inserts fail loudly; settlements stay buffered
      // for the next flush (until then the rows are pending, which is safe: replay dedupes).
      for (const batch of inserts) batch.reject(error);
      for (const w of waiters) w.reject(error);
      if (settlements.size > 0) this.#settleTimer = setTimeout(() => this.#scheduleFlush(), 1000);
      return;
    }
    settlements.clear();
    for (const { laneId, seq } of this.#added) this.#pending?.add(laneId, seq);
    inserts.forEach((batch, i) => batch.resolve(outcomes[i] as InsertOutcome[]));
    for (const w of waiters) w.resolve();
  }

  #insertRow(row: NewOutboxRow, seq: number, now: number): InsertOutcome {
    const key = txnKey(row.txnId);
    const taken = this.#keys.claim(key, seq);
    if (taken !== undefined) {
      const raw = this.#bySeq.get(taken) as RawRow | undefined;
      if (raw?.txn_id === row.txnId) return { inserted: false, row: this.#current(raw) };
      if (raw && txnKey(raw.txn_id) === key) {
        throw new Error(
          `txnId ${row.txnId} collides with ${raw.txn_id} on 64 bits of their hashes; not journaled`,
        );
      }
      this.#keys.repoint(key, seq); // its row is gone
    }
    const { request } = row;
    const laneId = this.#laneIdOf(row.lane, true);
    this.#insert.run(
      seq,
      key,
      row.txnId,
      laneId,
      row.kind,
      row.sender,
      request.method,
      request.path,
      request.body ?? null,
      now,
    );
    this.#added.push({ laneId, seq, id: row.txnId });
    return {
      inserted: true,
      row: {
        ...row,
        seq,
        state: "pending",
        attempts: 0,
        eventId: undefined,
        error: undefined,
        createdAt: now,
        settledAt: undefined,
      },
    };
  }

  /** A journal row as it stands, with its settlement if that is still buffered. */
  #current(raw: RawRow): OutboxRow {
    const buffered = raw.state === "pending" ? this.#settlements.get(raw.txn_id) : undefined;
    return buffered ? withSettlement(toRow(raw), buffered) : toRow(raw);
  }

  /** The row of a txnId: through the key index, and in the journal past what that covers. */
  #find(txnId: TxnId): RawRow | undefined {
    const seq = this.#keys.seqOf(txnKey(txnId));
    const raw = seq === undefined ? undefined : (this.#bySeq.get(seq) as RawRow | undefined);
    if (raw?.txn_id === txnId) return raw;
    const after = this.#keys.unindexedAfter();
    return after === undefined ? undefined : (this.#byTxnIdAfter.get(after, txnId) as RawRow | undefined);
  }

  /** Each lane's pending seqs; rows whose settlement is still buffered are not pending. */
  #pendingByLane(): PendingByLane {
    if (this.#pending === undefined) {
      const settling = new Set([...this.#settlements.values()].map((s) => s.seq));
      this.#pending = new PendingByLane();
      for (const lane of this.#allPending.all() as Array<{ lane_id: number; seqs: string }>) {
        const seqs = JSON.parse(lane.seqs) as number[];
        this.#pending.set(
          lane.lane_id,
          settling.size === 0 ? seqs : seqs.filter((seq) => !settling.has(seq)),
        );
      }
    }
    return this.#pending;
  }

  #seqsOf(txnIds: readonly TxnId[]): number[] {
    return txnIds.flatMap((id) => this.#find(id)?.seq ?? []);
  }

  /** The integer id of a lane, created when `create` (inside a transaction) and unknown. */
  #laneIdOf(lane: string, create: true): number;
  #laneIdOf(lane: string, create: false): number | undefined;
  #laneIdOf(lane: string, create: boolean): number | undefined {
    let id = this.#laneIds.get(lane);
    if (id === undefined) {
      const found = (this.#laneId.get(lane) ?? (create ? this.#addLane.get(lane) : undefined)) as
        { id: number } | undefined;
      id = found?.id;
      if (id !== undefined) this.#laneIds.set(lane, id);
    }
    return id;
  }

  #transaction<T>(work: () => T): T {
    this.#added = [];
    return this.#keys.follow(
      () => {
        this.#begin.run();
        try {
          const result = work();
          this.#commit.run();
          return result;
        } catch (error) {
          if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
          this.#laneIds.clear(); // ids handed out inside the rolled-back transaction are gone
          throw error;
        }
      },
      () => this.#added.at(-1),
    );
  }
}
