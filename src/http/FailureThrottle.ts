/** When a client address is refused, and for how long. */
export interface FailureThrottleOptions {
  /** Failures after which an address is made to wait. @default 5 */
  readonly failuresBeforeWait?: number;
  /** The first wait; each failure after a wait doubles it. @default 1000 */
  readonly baseDelayMs?: number;
  /** The longest wait. @default 60000 */
  readonly maxDelayMs?: number;
  /** Addresses remembered at once; the stalest is forgotten first, so spraying addresses costs bounded memory. @default 10000 */
  readonly maxAddresses?: number;
  /** Called once when an address starts being made to wait (not on each refusal). */
  readonly onThrottled?: (address: string, failures: number, waitMs: number) => void;
  /** The clock (tests). @default Date.now */
  readonly now?: () => number;
}

export const FAILURE_THROTTLE_DEFAULTS = {
  failuresBeforeWait: 5,
  baseDelayMs: 1_000,
  maxDelayMs: 60_000,
  maxAddresses: 10_000,
} as const;

interface Record {
  failures: number;
  /** Until when the address is refused without its credentials being looked at. */
  blockedUntil: number;
  lastFailureAt: number;
  /** Whether `onThrottled` was called for the current run of failures. */
  reported: boolean;
}

/**
 * Failed credentials per client address, with exponential backoff: after `failuresBeforeWait`
 * failures, an address waits `baseDelayMs`, doubling with each further failure up to
 * `maxDelayMs`. While it waits, every attempt is refused before its credentials are compared, so
 * a guesser learns nothing, not even with the right token. A success forgets the address; so does
 * a quiet period of twice the longest wait. Pure: no I/O, the clock is injected.
 */
export class FailureThrottle {
  readonly #records = new Map<string, Record>();
  readonly #free: number;
  readonly #base: number;
  readonly #max: number;
  readonly #maxAddresses: number;
  readonly #onThrottled: FailureThrottleOptions["onThrottled"];
  readonly #now: () => number;

  constructor(options: FailureThrottleOptions = {}) {
    this.#free = options.failuresBeforeWait ?? FAILURE_THROTTLE_DEFAULTS.failuresBeforeWait;
    this.#base = options.baseDelayMs ?? FAILURE_THROTTLE_DEFAULTS.baseDelayMs;
    this.#max = options.maxDelayMs ?? FAILURE_THROTTLE_DEFAULTS.maxDelayMs;
    this.#maxAddresses = options.maxAddresses ?? FAILURE_THROTTLE_DEFAULTS.maxAddresses;
    this.#onThrottled = options.onThrottled;
    this.#now = options.now ?? Date.now;
  }

  /** How long `address` must still wait before its credentials are looked at; 0: go ahead. */
  waitMs(address: string): number {
    const record = this.#live(address);
    return record === undefined ? 0 : Math.max(0, record.blockedUntil - this.#now());
  }

  /** Records a failed attempt from `address`. */
  failed(address: string): void {
    const now = this.#now();
    const record = this.#live(address) ?? {
      failures: 0,
      blockedUntil: 0,
      lastFailureAt: now,
      reported: false,
    };
    record.failures += 1;
    record.lastFailureAt = now;
    const over = record.failures - this.#free;
    if (over >= 0) {
      const wait = Math.min(this.#max, this.#base * 2 ** Math.min(over, 30));
      record.blockedUntil = now + wait;
      if (!record.reported) {
        record.reported = true;
        this.#onThrottled?.(address, record.failures, wait);
      }
    }
    // Re-inserting keeps the Map in order of last failure: the first key is the stalest.
    this.#records.delete(address);
    this.#records.set(address, record);
    if (this.#records.size > this.#maxAddresses) this.#records.delete(this.#records.keys().next().value!);
  }

  /** A success: the address starts afresh. */
  succeeded(address: string): void {
    this.#records.delete(address);
  }

  #live(address: string): Record | undefined {
    const record = this.#records.get(address);
    if (record !== undefined && this.#now() - record.lastFailureAt > 2 * this.#max) {
      this.#records.delete(address);
      return undefined;
    }
    return record;
  }
}
