import type { Logger } from "pino";
import type { InboundSettlement, InboundJournal } from "./InboundJournal.ts";

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** Pauses before outcomes the store could not record are tried again: 1 s, doubling, at most 30 s. */
const RETRY_BASE_MS = 1_000;
const RETRY_CAP_MS = 30_000;

/**
 * The dispatcher's bookkeeping, group-committed: the begun dispatches and the outcomes asked for
 * during one turn of the event loop go to the journal in one `record` call (one commit).
 *
 * A begun dispatch that fails to commit rejects its caller, who asks again. An outcome is never
 * given up while the ledger runs: one that failed goes first into the next commit (retried with a
 * backoff), so no outcome is ever committed before an earlier one, and a room's order holds
 * across a crash even while its next items run before their predecessor's outcome is committed.
 */
export class InboundLedger {
  readonly #journal: InboundJournal;
  readonly #log: Logger;
  #begun: number[] = [];
  #beginWaiters: Waiter[] = [];
  /** Outcomes not committed yet, in the order they were reached; failed ones stay at the front. */
  #settled: InboundSettlement[] = [];
  #settleWaiters: Array<() => void> = [];
  #scheduled = false;
  #flushing: Promise<void> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #failures = 0;
  #stopped = false;

  constructor(journal: InboundJournal, log: Logger) {
    this.#journal = journal;
    this.#log = log;
  }

  /** Counts one more begun dispatch of an item; resolves once committed, rejects if that fails. */
  begin(seq: number): Promise<void> {
    this.#begun.push(seq);
    const committed = new Promise<void>((resolve, reject) => this.#beginWaiters.push({ resolve, reject }));
    this.#schedule();
    return committed;
  }

  /** Records an item's outcome; resolves once committed (retried until then; never rejects). */
  settle(settlement: InboundSettlement): Promise<void> {
    this.#settled.push(settlement);
    const committed = new Promise<void>((resolve) => this.#settleWaiters.push(resolve));
    if (this.#retry === undefined) this.#schedule();
    return committed;
  }

  /**
   * Tries once more to commit the outcomes not committed yet, then stops retrying: those still
   * failing stay pending in the journal and run again next start. Never rejects.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    await this.#flushing;
    await this.#flush();
    // Left pending in the journal; a later start reads them again, so they are not kept here.
    this.#settled = [];
    this.#settleWaiters = [];
  }

  /** The ledger takes outcomes again (the dispatcher starts). */
  start(): void {
    this.#stopped = false;
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      // One commit at a time, so that outcomes commit in the order they were reached.
      if (this.#flushing) void this.#flushing.then(() => this.#schedule());
      else void this.#flush();
    });
  }

  #flush(): Promise<void> {
    const flushing = this.#commit().finally(() => (this.#flushing = undefined));
    this.#flushing = flushing;
    return flushing;
  }

  async #commit(): Promise<void> {
    const begun = this.#begun;
    const beginWaiters = this.#beginWaiters;
    const settled = this.#settled;
    const settleWaiters = this.#settleWaiters;
    if (begun.length === 0 && settled.length === 0) return;
    this.#begun = [];
    this.#beginWaiters = [];
    this.#settled = [];
    this.#settleWaiters = [];
    try {
      await this.#journal.record({ begun, settled });
    } catch (error) {
      for (const waiter of beginWaiters) waiter.reject(error);
      // Back to the front, before anything reached since.
      this.#settled = [...settled, ...this.#settled];
      this.#settleWaiters = [...settleWaiters, ...this.#settleWaiters];
      if (settled.length > 0) this.#retryLater(error);
      return;
    }
    for (const waiter of beginWaiters) waiter.resolve();
    for (const resolve of settleWaiters) resolve();
    if (this.#failures > 0) this.#log.info({ outcomes: settled.length }, "inbound outcomes recorded again");
    this.#failures = 0;
  }

  #retryLater(error: unknown): void {
    if (this.#stopped || this.#retry !== undefined) return;
    this.#failures++;
    const delay = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** (this.#failures - 1));
    this.#log.error(
      { err: error, outcomes: this.#settled.length, delay },
      "could not record inbound outcomes; the items stay pending until they are recorded",
    );
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#schedule();
    }, delay);
  }
}
