/** Token bucket options, per sender. */
export interface RateOptions {
  /** Sustained requests per second. @default 50 */
  readonly perSecond: number;
  /** Requests that may leave at once after a quiet period. @default 100 */
  readonly burst: number;
}

export const DEFAULT_RATE: RateOptions = { perSecond: 50, burst: 100 };

/**
 * A token bucket that can also be paused (a 429's retry_after). Pure: time is passed in, so the
 * tests need no clock.
 */
export class TokenBucket {
  readonly #perMs: number;
  readonly #burst: number;
  #tokens: number;
  #updatedAt: number;
  #pausedUntil = 0;

  constructor(rate: RateOptions, now: number) {
    if (!(rate.perSecond > 0)) throw new TypeError(`Expected \`perSecond\` > 0, got ${rate.perSecond}`);
    if (!(rate.burst >= 1)) throw new TypeError(`Expected \`burst\` >= 1, got ${rate.burst}`);
    this.#perMs = rate.perSecond / 1000;
    this.#burst = rate.burst;
    this.#tokens = rate.burst;
    this.#updatedAt = now;
  }

  /** Takes a token and returns 0, or returns how many ms to wait before asking again (takes nothing). */
  take(now: number): number {
    if (now < this.#pausedUntil) return this.#pausedUntil - now;
    this.#refill(now);
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - this.#tokens) / this.#perMs);
  }

  /** Nothing leaves before `now + ms`; the bucket is emptied so the restart is gentle. */
  pause(ms: number, now: number): void {
    this.#pausedUntil = Math.max(this.#pausedUntil, now + ms);
    this.#tokens = 0;
    this.#updatedAt = this.#pausedUntil;
  }

  /** When the bucket is back to full and unpaused, it holds no information worth keeping. */
  isIdle(now: number): boolean {
    this.#refill(now);
    return now >= this.#pausedUntil && this.#tokens >= this.#burst;
  }

  #refill(now: number): void {
    if (now <= this.#updatedAt) return;
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#updatedAt) * this.#perMs);
    this.#updatedAt = now;
  }
}
