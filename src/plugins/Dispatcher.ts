import PQueue from "p-queue";
import type { Logger } from "pino";
import type { InboundItem, InboundStore } from "../store/InboundStore.ts";

/**
 * What the dispatcher runs for each item: resolves with the failures that were given up;
 * rejects when the item could not be handled for a reason outside the handlers (the store could
 * not journal a send), and the item stays pending to run again.
 */
export interface ItemRunner {
  dispatch(item: InboundItem): Promise<string[]>;
}

/** Pauses of an interrupted lane before its head runs again: 1 s, doubling, at most 30 s. */
const INTERRUPTED_BASE_MS = 1_000;
const INTERRUPTED_CAP_MS = 30_000;

export interface DispatcherOptions {
  readonly journal: InboundStore;
  readonly runner: ItemRunner;
  readonly logger: Logger;
  /** Lanes (rooms) handled at the same time. @default 16 */
  readonly maxConcurrency?: number;
  /**
   * Dispatches of one item before it is dead-lettered without running again: a handler that
   * crashes the whole process must not crash it forever. @default 5
   */
  readonly maxDispatches?: number;
  /** Items held in memory; more wait in the journal. @default 2000 */
  readonly maxBuffered?: number;
}

interface Lane {
  readonly items: InboundItem[];
  running: boolean;
  /** Consecutive interruptions of the head (store faults), for the pause before the next try. */
  interruptions: number;
}

/**
 * Runs journaled items through the plugins: in order within a lane (a room), lanes concurrently.
 * Marks each item done (or failed, with the reason) once its handlers finished; after a crash the
 * unfinished ones run again, and their sends collapse onto the outbox rows already journaled.
 */
export class Dispatcher {
  readonly #journal: InboundStore;
  readonly #runner: ItemRunner;
  readonly #log: Logger;
  readonly #queue: PQueue;
  readonly #maxDispatches: number;
  readonly #maxBuffered: number;
  readonly #lanes = new Map<string, Lane>();
  #cursor = 0;
  #buffered = 0;
  #loading = false;
  #again = false;
  #stopped = true;
  #idleWaiters: Array<() => void> = [];
  /**
   * Dispatch counts of the items being handled, by seq. An item interrupted in this process (it
   * did not crash it) keeps its count when it runs again: `maxDispatches` is there for handlers
   * that crash the process, not for a store that is full for a while.
   */
  readonly #dispatches = new Map<number, number>();
  readonly #pauses = new Set<NodeJS.Timeout>();

  constructor(options: DispatcherOptions) {
    this.#journal = options.journal;
    this.#runner = options.runner;
    this.#log = options.logger;
    this.#queue = new PQueue({ concurrency: options.maxConcurrency ?? 16 });
    this.#maxDispatches = options.maxDispatches ?? 5;
    this.#maxBuffered = options.maxBuffered ?? 2000;
  }

  /** Starts with everything the journal holds that is not done (a crash's leftovers first). */
  start(): void {
    this.#stopped = false;
    this.wake();
  }

  /** New items were journaled. Cheap; call it after every commit. */
  wake(): void {
    if (this.#stopped) return;
    if (this.#loading) {
      this.#again = true;
      return;
    }
    void this.#load();
  }

  /** Resolves when nothing is buffered or running, or once stopped and nothing is running. */
  onIdle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Stops taking items; waits for running handlers (at most `deadlineMs`). Unfinished items stay journaled. */
  async stop(deadlineMs = 10_000): Promise<void> {
    this.#stopped = true;
    for (const timer of this.#pauses) clearTimeout(timer);
    this.#pauses.clear();
    this.#queue.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#queue.onIdle(), new Promise((r) => (timer = setTimeout(r, deadlineMs)))]);
    clearTimeout(timer);
    this.#notifyIdle();
  }

  async #load(): Promise<void> {
    this.#loading = true;
    try {
      do {
        this.#again = false;
        while (!this.#stopped && this.#buffered < this.#maxBuffered) {
          const items = await this.#journal.pending(
            this.#cursor,
            Math.min(500, this.#maxBuffered - this.#buffered),
          );
          for (const item of items) this.#accept(item);
          if (items.length === 0) break;
        }
      } while (this.#again && !this.#stopped);
    } catch (error) {
      this.#log.error({ err: error }, "could not read the inbound journal; retrying in 1 s");
      setTimeout(() => this.wake(), 1000).unref();
    } finally {
      this.#loading = false;
      this.#notifyIdle();
    }
  }

  #accept(item: InboundItem): void {
    this.#cursor = Math.max(this.#cursor, item.seq);
    this.#buffered++;
    let lane = this.#lanes.get(item.lane);
    if (!lane) {
      lane = { items: [], running: false, interruptions: 0 };
      this.#lanes.set(item.lane, lane);
    }
    lane.items.push(item);
    this.#pump(item.lane, lane);
  }

  #pump(key: string, lane: Lane): void {
    if (lane.running || this.#stopped) return;
    const item = lane.items[0];
    if (!item) {
      this.#lanes.delete(key);
      this.#notifyIdle();
      return;
    }
    lane.running = true;
    void this.#queue.add(async () => {
      try {
        await this.#process(item);
      } catch (error) {
        // The store could not journal a send or record the outcome: the item stays at the head,
        // pending in the journal, and runs again after a pause (the lane waits, others go on).
        lane.interruptions++;
        const pauseMs = Math.min(INTERRUPTED_CAP_MS, INTERRUPTED_BASE_MS * 2 ** (lane.interruptions - 1));
        this.#log.error(
          { err: error, seq: item.seq, lane: item.lane, pauseMs },
          "inbound item interrupted (store unavailable); it stays pending and runs again",
        );
        const timer = setTimeout(() => {
          this.#pauses.delete(timer);
          lane.running = false;
          this.#pump(key, lane);
        }, pauseMs);
        this.#pauses.add(timer);
        return;
      }
      this.#dispatches.delete(item.seq);
      lane.interruptions = 0;
      lane.items.shift();
      this.#buffered--;
      lane.running = false;
      this.#pump(key, lane);
      if (this.#buffered < this.#maxBuffered / 2) this.wake();
    });
  }

  async #process(item: InboundItem): Promise<void> {
    // Counted before the handlers run, so a dispatch that crashes the process is counted too.
    const dispatches = this.#dispatches.get(item.seq) ?? (await this.#journal.recordAttempt(item.seq));
    this.#dispatches.set(item.seq, dispatches);
    if (dispatches > this.#maxDispatches) {
      this.#log.error(
        { seq: item.seq, lane: item.lane, dispatches },
        "inbound item dead-lettered: dispatched too often",
      );
      await this.#journal.settle(item.seq, "failed", `dispatched ${dispatches - 1} times without finishing`);
      return;
    }
    const failures = await this.#runner.dispatch(item);
    if (failures.length === 0) await this.#journal.settle(item.seq, "done");
    else await this.#journal.settle(item.seq, "failed", failures.join("; "));
  }

  // An item leaves the buffer only once processed, so an empty buffer means nothing is running.
  // Stopped, what is still buffered will not run here (it stays journaled): waiting for it would
  // never end.
  #isIdle(): boolean {
    return (this.#buffered === 0 || (this.#stopped && this.#queue.pending === 0)) && !this.#loading;
  }

  #notifyIdle(): void {
    if (!this.#isIdle()) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }
}
