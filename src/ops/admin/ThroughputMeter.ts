const MINUTE_MS = 60_000;

/** Requests delivered and dead-lettered per minute, oldest minute first. */
export interface ThroughputSeries {
  /** Length of one slot in ms (a minute). */
  readonly slotMs: number;
  /** Start (ms epoch) of the last slot, the current, still running minute. */
  readonly lastSlotStart: number;
  readonly sent: number[];
  readonly dead: number[];
}

interface Slot {
  minute: number;
  sent: number;
  dead: number;
}

/**
 * Counts outcomes per wall-clock minute in a ring of `minutes` slots, so the dashboard can draw
 * the last hour without asking the store. In memory: it starts empty with the process. O(1)
 * per record, no timers.
 */
export class ThroughputMeter {
  readonly #slots: Slot[];
  readonly #now: () => number;

  /**
   * @param options.minutes how far back the series reaches. @default 60
   * @param options.now the clock (tests). @default Date.now
   */
  constructor(options: { minutes?: number; now?: () => number } = {}) {
    const minutes = options.minutes ?? 60;
    if (!Number.isSafeInteger(minutes) || minutes < 1) {
      throw new TypeError(`Expected \`minutes\` to be a positive integer, got ${minutes}`);
    }
    this.#slots = Array.from({ length: minutes }, () => ({ minute: -1, sent: 0, dead: 0 }));
    this.#now = options.now ?? Date.now;
  }

  /** Counts one delivered request now. */
  sent(): void {
    this.#slot(Math.floor(this.#now() / MINUTE_MS)).sent++;
  }

  /** Counts one dead-lettered request now. */
  dead(): void {
    this.#slot(Math.floor(this.#now() / MINUTE_MS)).dead++;
  }

  /** The last `minutes` minutes up to now, oldest first; minutes without outcomes are 0. */
  series(): ThroughputSeries {
    const current = Math.floor(this.#now() / MINUTE_MS);
    const size = this.#slots.length;
    const sent: number[] = [];
    const dead: number[] = [];
    for (let minute = current - size + 1; minute <= current; minute++) {
      const slot = this.#slots[mod(minute, size)]!;
      const live = slot.minute === minute;
      sent.push(live ? slot.sent : 0);
      dead.push(live ? slot.dead : 0);
    }
    return { slotMs: MINUTE_MS, lastSlotStart: current * MINUTE_MS, sent, dead };
  }

  #slot(minute: number): Slot {
    const slot = this.#slots[mod(minute, this.#slots.length)]!;
    // A slot last used an hour (or more) ago is reused for this minute.
    if (slot.minute !== minute) {
      slot.minute = minute;
      slot.sent = 0;
      slot.dead = 0;
    }
    return slot;
  }
}

function mod(n: number, m: number): number {
  return ((n % m) + m) % m;
}
