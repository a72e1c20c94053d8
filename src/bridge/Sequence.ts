/**
 * Increasing journal positions that survive a restart without a counter row: the next is the
 * larger of the last one + 1 and the clock in µs, so a restarted process (whose clock moved on)
 * never reuses one. Keys are zero-padded so the store lists them in order.
 */
export class Sequence {
  #last: number;
  readonly #now: () => number;

  constructor(last = 0, now: () => number = Date.now) {
    this.#last = last;
    this.#now = now;
  }

  /** Moves past a position already used (read back at start). */
  seen(position: number): void {
    if (position > this.#last) this.#last = position;
  }

  next(): number {
    this.#last = Math.max(this.#last + 1, this.#now() * 1000);
    return this.#last;
  }
}

export const padSeq = (seq: number): string => String(seq).padStart(17, "0");
