import type { EventId, TxnId } from "../ids.ts";
import type { DeadReason, OutboxRow, OutboxStore } from "../store/OutboxStore.ts";
import { DeadLetterError } from "../errors.ts";
import type { Delivery } from "./types.ts";

/** How a dropped row's waiters learn its fate (`courier outbox drop`). */
export const DROPPED: DeadReason = {
  errcode: "COURIER_DROPPED",
  status: 0,
  reason: "dropped by an operator",
};

export interface Waiter {
  resolve(eventId: string | undefined): void;
  reject(error: Error): void;
}

/** The error a waiter of a dead-lettered (or dropped) row is rejected with. */
export function deadLetterOf(row: Pick<OutboxRow, "txnId" | "error">): DeadLetterError {
  const error = row.error ?? { errcode: "M_UNKNOWN", status: 0, reason: "unknown" };
  return new DeadLetterError(row.txnId, error.errcode, error.status, error.reason);
}

/**
 * Who waits for which request's outcome (`Enqueued.delivered()`). Lazy: a request nobody waits
 * for costs one map lookup when it settles.
 */
export class Deliveries {
  readonly #store: Pick<OutboxStore, "get">;
  readonly #waiters = new Map<string, Waiter[]>();

  constructor(store: Pick<OutboxStore, "get">) {
    this.#store = store;
  }

  /**
   * Resolves once every request is sent, with the first one's event id; rejects with
   * DeadLetterError when one is dead-lettered or dropped. Reads each row once from the store,
   * for outcomes settled before the call.
   */
  async wait(txnIds: readonly TxnId[]): Promise<Delivery> {
    const ids = await Promise.all(txnIds.map((txnId) => this.#waitOne(txnId)));
    return { txnId: txnIds[0] as TxnId, eventId: ids[0] as EventId | undefined };
  }

  /** The request was accepted: its waiters resolve with `eventId`. No I/O. */
  sent(txnId: string, eventId: string | undefined): void {
    this.#settle(txnId, (w) => w.resolve(eventId));
  }

  /** The request will not be sent (dead-lettered, dropped): its waiters reject. No I/O. */
  failed(txnId: string, error: Error): void {
    this.#settle(txnId, (w) => w.reject(error));
  }

  /** Nobody is left to settle anything (the outbox stopped): every waiter rejects. No I/O. */
  failAll(error: () => Error): void {
    for (const txnId of [...this.#waiters.keys()]) this.failed(txnId, error());
  }

  #waitOne(txnId: TxnId): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      // Register first, then look: an outcome settled in between is already in the store's view.
      const list = this.#waiters.get(txnId) ?? [];
      list.push({ resolve, reject });
      this.#waiters.set(txnId, list);
      this.#store.get(txnId).then((row) => {
        if (row?.state === "sent") this.sent(txnId, row.eventId);
        if (row?.state === "dead") this.failed(txnId, deadLetterOf(row));
        if (row?.state === "dropped") this.failed(txnId, deadLetterOf({ txnId, error: DROPPED }));
      }, reject);
    });
  }

  #settle(txnId: string, settle: (waiter: Waiter) => void): void {
    const list = this.#waiters.get(txnId);
    if (!list) return;
    this.#waiters.delete(txnId);
    for (const waiter of list) settle(waiter);
  }
}
