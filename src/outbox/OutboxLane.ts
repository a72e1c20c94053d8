import type { OutboxRow } from "../store/OutboxStore.ts";

/**
 * One FIFO of the outbox (a room, or one sender's to-device messages). It holds a window of the
 * lane's pending rows, not all of them, so a backlog of millions costs no memory; the rest stay in
 * the store and are loaded when the window runs dry. Only the head is ever in flight.
 */
export class OutboxLane {
  readonly key: string;
  /** Pending rows in seq order; `rows[0]` is the head. */
  rows: OutboxRow[] = [];
  /** Highest seq held or loaded; the next load starts after it. */
  lastSeq = 0;
  /** The window holds every pending row of the lane (none left in the store only). */
  complete: boolean;
  loading = false;
  /** A row was committed while a load was running: the load's view may miss it. */
  grewWhileLoading = false;
  /** The head is in flight or waiting for a timer (backoff, rate limit). */
  busy = false;
  /** Failed attempts of the current head. */
  attempts = 0;
  /** When the current head was first tried, for latency figures. */
  headStartedAt = 0;
  /** When the current head became the head (performance.now()). */
  headSince = performance.now();

  constructor(key: string, complete: boolean) {
    this.key = key;
    this.complete = complete;
  }

  /**
   * Adds a row just committed to this lane; returns false when it is left in the store: the window
   * is full, or the lane is stalled: its head failed (backoff) or has waited over `stalledMs`
   * (for a queue slot, a token or an answer). An outage's backlog thus waits on disk, not in memory.
   */
  offer(row: OutboxRow, window: number, stalledMs: number): boolean {
    if (row.seq <= this.lastSeq) return true;
    if (this.loading) {
      this.grewWhileLoading = true;
      return false;
    }
    const now = performance.now();
    const stalled = this.rows.length > 0 && (this.attempts > 0 || now - this.headSince > stalledMs);
    if (!this.complete || this.rows.length >= window || stalled) {
      this.complete = false;
      return false;
    }
    if (this.rows.length === 0) this.headSince = now;
    this.rows.push(row);
    this.lastSeq = row.seq;
    return true;
  }

  /** Appends rows loaded from the store (already in seq order). */
  loaded(rows: readonly OutboxRow[], window: number): void {
    if (this.rows.length === 0) this.headSince = performance.now();
    for (const row of rows) {
      if (row.seq > this.lastSeq) {
        this.rows.push(row);
        this.lastSeq = row.seq;
      }
    }
    this.complete = rows.length < window && !this.grewWhileLoading;
    this.grewWhileLoading = false;
    this.loading = false;
  }

  /** Takes rows older than the head (put back to pending); they go right after a head in flight. */
  adopt(rows: readonly OutboxRow[]): void {
    const held = new Set(this.rows.map((row) => row.seq));
    const fresh = rows.filter((row) => !held.has(row.seq));
    this.rows.splice(this.busy ? 1 : 0, 0, ...fresh);
  }

  /** The head was delivered or dead-lettered. */
  advance(): OutboxRow | undefined {
    this.attempts = 0;
    this.headSince = performance.now();
    return this.rows.shift();
  }
}
