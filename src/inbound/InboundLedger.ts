import type { InboundSettlement, InboundJournal } from "./InboundJournal.ts";

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * The dispatcher's bookkeeping, group-committed: the begun dispatches and the outcomes asked for
 * during one turn of the event loop go to the journal in one `record` call (one commit), and
 * every caller's promise settles with it. A failed commit rejects them all; nothing of it is kept,
 * so each caller asks again.
 */
export class InboundLedger {
  readonly #journal: InboundJournal;
  #begun: number[] = [];
  #settled: InboundSettlement[] = [];
  #waiters: Waiter[] = [];
  #scheduled = false;

  constructor(journal: InboundJournal) {
    this.#journal = journal;
  }

  /** Counts one more begun dispatch of an item; resolves once committed. */
  begin(seq: number): Promise<void> {
    this.#begun.push(seq);
    return this.#wait();
  }

  /** Records an item's outcome; resolves once committed. */
  settle(settlement: InboundSettlement): Promise<void> {
    this.#settled.push(settlement);
    return this.#wait();
  }

  #wait(): Promise<void> {
    const promise = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => void this.#flush());
    }
    return promise;
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    const batch = { begun: this.#begun, settled: this.#settled };
    const waiters = this.#waiters;
    this.#begun = [];
    this.#settled = [];
    this.#waiters = [];
    try {
      await this.#journal.record(batch);
    } catch (error) {
      for (const waiter of waiters) waiter.reject(error);
      return;
    }
    for (const waiter of waiters) waiter.resolve();
  }
}
