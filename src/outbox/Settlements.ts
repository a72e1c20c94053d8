import type { Logger } from "pino";
import type { OutboxRow, OutboxStore, Settlement } from "../store/OutboxStore.ts";
import { backoffDelay, type RetryOptions } from "./classifyFailure.ts";

/** Backoff of outcomes the store could not record. */
const SETTLE_RETRY: RetryOptions = { baseMs: 1_000, capMs: 30_000 };

/**
 * Records outcomes (sent, dead) in the store. If the store cannot (disk full, read-only,
 * connection lost), an outcome is kept here and committed later with a backoff: until then the
 * row is pending in the store, and a lane loaded meanwhile must not send it again (`unsettled`).
 */
export class Settlements {
  readonly #store: Pick<OutboxStore, "settle">;
  readonly #log: Logger;
  readonly #random: () => number;
  /** Outcomes the store could not record yet, by txnId. */
  readonly #unsettled = new Map<string, Settlement>();
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #stopped = false;

  constructor(store: Pick<OutboxStore, "settle">, log: Logger, random: () => number) {
    this.#store = store;
    this.#log = log;
    this.#random = random;
  }

  /** Records an outcome; does I/O in the background and never rejects. */
  record(settlement: Settlement): void {
    this.#store.settle([settlement]).catch((error: unknown) => {
      this.#unsettled.set(settlement.txnId, settlement);
      this.#retryLater(error);
    });
  }

  /** The rows still pending: those loaded from the store less the ones settled here. No I/O. */
  pendingOf(rows: readonly OutboxRow[]): readonly OutboxRow[] {
    return this.#unsettled.size === 0 ? rows : rows.filter((r) => !this.#unsettled.has(r.txnId));
  }

  /** Outcomes may be retried again (the outbox starts). */
  start(): void {
    this.#stopped = false;
  }

  /** No retry is scheduled from now on (the outbox is stopping); `commitLast()` makes the last try. */
  stop(): void {
    this.#stopped = true;
  }

  /**
   * Tries once more to commit every outcome kept here, then forgets them: what still fails stays
   * pending in the store and is replayed (and deduplicated) next start. Does I/O; never rejects.
   */
  async commitLast(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#unsettled.size > 0) await this.#store.settle([...this.#unsettled.values()]).catch(() => {});
    this.#unsettled.clear();
  }

  #retryLater(error: unknown): void {
    if (this.#timer || this.#stopped) return;
    this.#failures++;
    const delay = backoffDelay(this.#failures, SETTLE_RETRY, this.#random);
    if (this.#failures === 1)
      this.#log.error({ err: error, delay }, "could not record outcomes in the journal; retrying");
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const batch = [...this.#unsettled.values()];
      this.#store.settle(batch).then(
        () => {
          for (const s of batch) if (this.#unsettled.get(s.txnId) === s) this.#unsettled.delete(s.txnId);
          if (this.#failures > 0) this.#log.info({ outcomes: batch.length }, "outcomes recorded again");
          this.#failures = 0;
          if (this.#unsettled.size > 0) this.#retryLater(undefined);
        },
        (e: unknown) => this.#retryLater(e),
      );
    }, delay);
  }
}
