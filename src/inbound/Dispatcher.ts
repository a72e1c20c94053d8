import PQueue from "p-queue";
import type { Logger } from "pino";
import { isJournalUnavailable } from "../errors.ts";
import type { LaneOwnership } from "./LaneOwnership.ts";
import type { InboundItem, InboundJournal, JournalOutcome } from "./InboundJournal.ts";
import { InboundLedger } from "./InboundLedger.ts";

/**
 * What the dispatcher runs for each item: resolves with the failures that were given up (the
 * item is dead-lettered with them); rejects with a `JournalUnavailableError` when the store could
 * not journal a send (the item stays pending and runs again once the store heals). Any other
 * rejection is a failure of the item: it runs again, against its dispatch budget.
 */
export interface ItemRunner {
  dispatch(item: InboundItem): Promise<string[]>;
}

/** Pauses of a lane whose store writes fail, before its head runs again: 1 s, doubling, at most 30 s. */
const STORE_PAUSE_BASE_MS = 1_000;
const STORE_PAUSE_CAP_MS = 30_000;
/** Pauses before an item whose dispatch threw runs again: doubling, at most 5 s. */
const FAILURE_PAUSE_CAP_MS = 5_000;
/** Defaults of the options the configuration sets too: `config/schema.ts` reads them here. */
export const DISPATCHER_DEFAULTS = { maxConcurrency: 16 } as const;

/** Items read from the journal at a time. */
const READ_WINDOW = 500;
/** The dispatch of an item the journal counted when it was journaled. */
const COUNTED = Promise.resolve();

export interface DispatcherOptions {
  readonly journal: InboundJournal;
  readonly runner: ItemRunner;
  readonly logger: Logger;
  /** Lanes (rooms) handled at the same time. @default 16 */
  readonly maxConcurrency?: number;
  /**
   * Dispatches of one item before it is dead-lettered without running again, counted across
   * restarts: a handler that crashes the whole process must not crash it forever, and an item
   * whose dispatch throws must not hold its room. @default 5
   */
  readonly maxDispatches?: number;
  /** Items held in memory; more wait in the journal. @default 2000 */
  readonly maxBuffered?: number;
  /**
   * Items of one lane held in memory; more of that lane wait in the journal, so that a slow room
   * never takes the buffer from the others. @default a quarter of `maxBuffered`
   */
  readonly maxBufferedPerLane?: number;
  /** First pause before an item whose dispatch threw runs again. @default 100 */
  readonly failurePauseMs?: number;
  /** Told about every item dead-lettered here (metrics). Synchronous. @default does nothing */
  readonly onDead?: (item: InboundItem, reason: string) => void;
  /**
   * Several instances on one journal: only the lanes this instance owns are dispatched here;
   * items of other lanes stay pending for their owners. @default none: every lane is this one's
   */
  readonly ownership?: LaneOwnership;
}

/** An item held in memory, with what this process knows of its dispatch. */
interface Held {
  readonly item: InboundItem;
  /** Dispatches begun, this process's included; committed once `begun` resolved. */
  attempts: number;
  /** The commit counting this process's current dispatch; undefined when it is still to count. */
  begun: Promise<void> | undefined;
  lastError: string | undefined;
}

/** How an item's dispatch ended. */
interface Outcome {
  readonly state: "done" | "dead";
  readonly error?: string;
}

interface Lane {
  readonly key: string;
  readonly held: Held[];
  running: boolean;
  /** Consecutive store faults of the head, for the pause before the next try. */
  storeFaults: number;
  /** Consecutive failures of the head's dispatch in this process. */
  failures: number;
  /** The last seq of this lane taken into memory: a lane that overflowed reads on from there. */
  lastSeq: number;
  /** Items of this lane with lastSeq < seq ≤ the cursor wait in the journal, not in memory. */
  overflow: boolean;
}

/**
 * Runs journaled items through the plugins: in order within a lane (a room), lanes concurrently.
 *
 * Bookkeeping is group-committed (`InboundLedger`): before an item's handlers run, its dispatch
 * is counted in the journal (for items fresh from the journal, once for the whole batch they
 * came in); once they finished, its outcome, which the room's next item does not wait for
 * (outcomes commit in the order they were reached). A crash re-runs only items whose outcome was
 * not committed, and every run is counted: an item that keeps crashing the process is
 * dead-lettered after `maxDispatches`. A failure that is not the store's counts the same way and
 * never holds the room for longer than the budget; a store fault pauses the lane and retries,
 * uncounted; an outcome the store could not record is recorded later, its handlers not run again.
 */
export class Dispatcher {
  readonly #journal: InboundJournal;
  readonly #ledger: InboundLedger;
  readonly #runner: ItemRunner;
  readonly #log: Logger;
  readonly #queue: PQueue;
  readonly #maxDispatches: number;
  readonly #maxBuffered: number;
  readonly #maxPerLane: number;
  readonly #failurePauseMs: number;
  readonly #onDead: (item: InboundItem, reason: string) => void;
  readonly #ownership: LaneOwnership | undefined;
  /** Lanes being claimed (ownership): their items are read once the claim succeeds. */
  readonly #claiming = new Set<string>();
  /**
   * Lanes not in memory whose items the cursor passed while they were not ours (or that were
   * dropped when the lease went): once the lane is ours, however it became so, those are read
   * from the journal before anything newer, or the room's order breaks.
   */
  readonly #passedOver = new Set<string>();
  readonly #lanes = new Map<string, Lane>();
  /** Outcomes reached and not yet committed, by lane (the lane may have left memory meanwhile). */
  readonly #settling = new Map<string, number>();
  /** Every item with seq ≤ cursor is in memory, settled, or waits in an overflowed lane. */
  #cursor = 0;
  /** Items above this seq were journaled after this dispatcher started (read at the first load). */
  #freshAfter = 0;
  #started = false;
  #buffered = 0;
  /** The journal may hold pending items past the cursor (the buffer was full, an offer refused). */
  #unread = true;
  #loading = false;
  #again = false;
  #stopped = true;
  #idleWaiters: Array<() => void> = [];
  readonly #pauses = new Set<NodeJS.Timeout>();

  constructor(options: DispatcherOptions) {
    this.#journal = options.journal;
    this.#ledger = new InboundLedger(options.journal, options.logger);
    this.#runner = options.runner;
    this.#log = options.logger;
    this.#queue = new PQueue({ concurrency: options.maxConcurrency ?? DISPATCHER_DEFAULTS.maxConcurrency });
    this.#maxDispatches = options.maxDispatches ?? 5;
    this.#maxBuffered = options.maxBuffered ?? 2000;
    this.#maxPerLane = Math.max(1, options.maxBufferedPerLane ?? Math.ceil(this.#maxBuffered / 4));
    this.#failurePauseMs = options.failurePauseMs ?? 100;
    this.#onDead = options.onDead ?? (() => {});
    this.#ownership = options.ownership;
  }

  /**
   * Starts with everything the journal holds that is not done (a crash's leftovers first). With
   * an ownership, once it has taken this instance's share of the lanes. Does I/O.
   */
  start(): Promise<void> {
    this.#stopped = false;
    this.#ledger.start();
    if (!this.#ownership) {
      this.wake();
      return Promise.resolve();
    }
    return this.#ownership
      .start({
        owned: (lanes) => {
          for (const key of lanes) if (!this.#lanes.has(key)) this.#readLane(key);
        },
        grew: () => this.wake(),
        // Until its outcomes are committed, or the next owner would run those items again.
        busy: (key) => (this.#lanes.get(key)?.running ?? false) || this.#settling.has(key),
      })
      .then(() => this.wake());
  }

  /**
   * A lane that became this instance's: its items up to the cursor are read as an overflowed
   * lane's are (the cursor went past them while another instance owned it); the rest as usual.
   */
  #readLane(key: string): void {
    if (this.#stopped || this.#lanes.has(key)) return;
    this.#passedOver.delete(key);
    this.#lanes.set(key, {
      key,
      held: [],
      running: false,
      storeFaults: 0,
      failures: 0,
      lastSeq: 0,
      overflow: true,
    });
    this.#read();
  }

  /**
   * A transaction was journaled: takes its items straight from the journal's answer when
   * nothing before them is unread and the buffer has room, and reads the journal otherwise.
   */
  offer(journaled: JournalOutcome): void {
    if (this.#stopped) return;
    const fits = this.#buffered + journaled.items.length <= this.#maxBuffered;
    if (this.#loading || journaled.afterSeq !== this.#cursor || !fits) {
      this.wake();
      return;
    }
    if (journaled.items.length === 0) {
      this.#cursor = journaled.upToSeq; // only rejected items: nothing to run
      return;
    }
    // The cursor first: a lane read from the journal while accepting reads up to it.
    this.#cursor = journaled.upToSeq;
    this.#accept(journaled.items);
    this.#notifyIdle();
  }

  /** New items were journaled: reads them. Cheap; call it after every commit. */
  wake(): void {
    this.#unread = true;
    this.#read();
  }

  #read(): void {
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
    await this.#ledger.stop();
    // Given back only now: a lane whose handler still ran would be dispatched again by its next owner.
    await this.#ownership
      ?.stop()
      .catch((error: unknown) =>
        this.#log.error({ err: error }, "could not give the inbound lane leases back; they expire"),
      );
    this.#notifyIdle();
  }

  async #load(): Promise<void> {
    this.#loading = true;
    try {
      do {
        this.#again = false;
        if (!this.#started) {
          this.#freshAfter = await this.#journal.lastSeq();
          this.#started = true;
        }
        await this.#refillLanes();
        while (!this.#stopped && this.#buffered < this.#maxBuffered) {
          const limit = Math.min(READ_WINDOW, this.#maxBuffered - this.#buffered);
          const { items, readUpTo } = await this.#journal.pending(this.#cursor, limit);
          this.#cursor = Math.max(this.#cursor, readUpTo);
          this.#accept(items);
          if (items.length < limit) {
            this.#unread = false;
            break;
          }
        }
      } while (this.#again && !this.#stopped);
    } catch (error) {
      this.#log.error({ err: error }, "could not read the inbound journal; retrying in 1 s");
      this.#pause(() => this.#read(), 1000);
    } finally {
      this.#loading = false;
      this.#notifyIdle();
    }
  }

  /** Reads on the lanes that overflowed and have room again, up to the cursor. */
  async #refillLanes(): Promise<void> {
    for (const lane of this.#lanes.values()) {
      if (this.#stopped || !lane.overflow || lane.held.length > this.#maxPerLane / 2) continue;
      const limit = this.#maxPerLane - lane.held.length;
      const items = await this.#journal.pendingInLane(lane.key, lane.lastSeq, this.#cursor, limit);
      lane.overflow = items.length === limit;
      this.#take(lane, items);
      if (lane.held.length === 0) this.#lanes.delete(lane.key);
    }
  }

  /** Takes items read from the journal (or handed over by it) into their lanes, in seq order. */
  #accept(items: readonly InboundItem[]): void {
    const byLane = new Map<Lane, InboundItem[]>();
    for (const item of items) {
      let lane = this.#lanes.get(item.lane);
      if (!lane && this.#ownership) {
        if (!this.#ownership.owns(item.lane)) {
          this.#passedOver.add(item.lane);
          this.#claim(item.lane);
          continue; // its owner dispatches it, or this instance once its claim succeeds
        }
        if (this.#passedOver.has(item.lane)) {
          this.#readLane(item.lane); // this item too: the lane is read up to the cursor, in order
          continue;
        }
      }
      if (!lane) {
        lane = {
          key: item.lane,
          held: [],
          running: false,
          storeFaults: 0,
          failures: 0,
          lastSeq: 0,
          overflow: false,
        };
        this.#lanes.set(item.lane, lane);
      }
      if (lane.overflow) continue;
      let taken = byLane.get(lane);
      if (!taken) byLane.set(lane, (taken = []));
      if (lane.held.length + taken.length >= this.#maxPerLane) {
        lane.overflow = true;
        continue;
      }
      taken.push(item);
    }
    for (const [lane, taken] of byLane) this.#take(lane, taken);
  }

  #take(lane: Lane, items: readonly InboundItem[]): void {
    if (items.length === 0) return;
    for (const item of items) {
      // An item journaled since this dispatcher started had its first dispatch counted by the
      // journal. One journaled before (a crash's leftover, maybe begun already) is counted again
      // as it begins: a crash counts at most once against an item that never ran.
      const fresh = item.seq > this.#freshAfter;
      lane.held.push({
        item,
        attempts: item.attempts,
        begun: fresh ? COUNTED : undefined,
        lastError: undefined,
      });
      lane.lastSeq = item.seq;
    }
    this.#buffered += items.length;
    this.#pump(lane);
  }

  /** Claims a lane nobody owns (a room new to every instance); reads its items once it is ours. */
  #claim(key: string): void {
    const ownership = this.#ownership!;
    if (this.#claiming.has(key)) return;
    this.#claiming.add(key);
    ownership.claim(key).then(
      (ours) => {
        this.#claiming.delete(key);
        if (ours) this.#readLane(key);
      },
      (error: unknown) => {
        this.#claiming.delete(key);
        this.#log.warn({ err: error, lane: key }, "could not claim an inbound lane; its owner dispatches it");
      },
    );
  }

  #pump(lane: Lane): void {
    if (lane.running || this.#stopped) return;
    if (this.#ownership && !this.#ownership.owns(lane.key)) {
      // Its lease went to another instance: what is held here stays pending for the new owner.
      this.#buffered -= lane.held.length;
      this.#lanes.delete(lane.key);
      this.#passedOver.add(lane.key);
      this.#notifyIdle();
      return;
    }
    const head = lane.held[0];
    if (!head) {
      if (lane.overflow) this.#read();
      else this.#lanes.delete(lane.key);
      this.#notifyIdle();
      return;
    }
    lane.running = true;
    void this.#queue.add(() => this.#runHead(lane, head));
  }

  async #runHead(lane: Lane, head: Held): Promise<void> {
    const { item } = head;
    let outcome: Outcome | undefined;
    try {
      if (!head.begun) {
        head.attempts++;
        head.begun = this.#ledger.begin(item.seq);
      }
      try {
        await head.begun;
      } catch (error) {
        head.begun = undefined;
        head.attempts--;
        throw error;
      }
      outcome = await this.#dispatch(lane, head);
      if (!outcome) return this.#retryAfterFailure(lane, head);
    } catch (error) {
      // The store could not count the dispatch or journal a send: the item stays at the head,
      // pending in the journal, and goes on after a pause (others go on).
      lane.storeFaults++;
      const pauseMs = Math.min(STORE_PAUSE_CAP_MS, STORE_PAUSE_BASE_MS * 2 ** (lane.storeFaults - 1));
      this.#log.error(
        { err: error, seq: item.seq, lane: item.lane, pauseMs },
        "inbound item interrupted (store unavailable); it stays pending and goes on later",
      );
      this.#pause(() => {
        lane.running = false;
        this.#pump(lane);
      }, pauseMs);
      return;
    }
    if (outcome.state === "dead") this.#onDead(item, outcome.error ?? "");
    lane.storeFaults = 0;
    lane.failures = 0;
    lane.held.shift();
    lane.running = false;
    // The next item runs before this outcome is committed: the ledger commits outcomes in the
    // order they were reached, so a crash re-runs a suffix of the room, in order. The item leaves
    // the buffer once its outcome is committed.
    this.#settling.set(lane.key, (this.#settling.get(lane.key) ?? 0) + 1);
    void this.#ledger.settle({ seq: item.seq, ...outcome }).then(() => this.#settled(lane.key));
    // Read on when the lane's own overflow is half empty.
    if (lane.overflow && lane.held.length === Math.floor(this.#maxPerLane / 2)) this.#read();
    this.#pump(lane);
  }

  /** An outcome of the lane was committed. */
  #settled(key: string): void {
    const left = (this.#settling.get(key) ?? 1) - 1;
    if (left === 0) this.#settling.delete(key);
    else this.#settling.set(key, left);
    this.#buffered--;
    // Read on past the cursor once the buffer has room.
    if (this.#unread && this.#buffered < this.#maxBuffered / 2) this.#read();
    this.#notifyIdle();
  }

  /**
   * Runs the item's handlers, or gives it up when its budget is spent. Undefined when the dispatch
   * threw (not the store): the item runs again. Rejects on a store fault.
   */
  async #dispatch(lane: Lane, head: Held): Promise<Outcome | undefined> {
    const { item } = head;
    if (head.attempts > this.#maxDispatches) {
      const error =
        `dispatched ${head.attempts - 1} times without finishing` +
        (head.lastError === undefined ? "" : `; last error: ${head.lastError}`);
      this.#log.error(
        { seq: item.seq, lane: item.lane, eventId: item.eventId, error },
        "inbound item dead-lettered",
      );
      return { state: "dead", error };
    }
    try {
      const failures = await this.#runner.dispatch(item);
      return failures.length === 0 ? { state: "done" } : { state: "dead", error: failures.join("; ") };
    } catch (error) {
      if (isJournalUnavailable(error)) throw error;
      lane.failures++;
      head.lastError = error instanceof Error ? error.message : String(error);
      this.#log.error(
        { err: error, seq: item.seq, lane: item.lane, eventId: item.eventId, attempts: head.attempts },
        "inbound item failed to dispatch; it runs again against its budget",
      );
      return undefined;
    }
  }

  #retryAfterFailure(lane: Lane, head: Held): void {
    head.begun = undefined;
    const pauseMs = Math.min(FAILURE_PAUSE_CAP_MS, this.#failurePauseMs * 2 ** (lane.failures - 1));
    this.#pause(() => {
      lane.running = false;
      this.#pump(lane);
    }, pauseMs);
  }

  #pause(then: () => void, ms: number): void {
    const timer = setTimeout(() => {
      this.#pauses.delete(timer);
      then();
    }, ms);
    this.#pauses.add(timer);
  }

  // An item leaves the buffer only once settled, so an empty buffer means nothing is running;
  // a lane that overflowed still has items in the journal. Stopped, what is still buffered will
  // not run here (it stays journaled): waiting for it would never end.
  #isIdle(): boolean {
    if (this.#loading) return false;
    if (this.#stopped) return this.#queue.pending === 0;
    return this.#buffered === 0 && ![...this.#lanes.values()].some((lane) => lane.overflow);
  }

  #notifyIdle(): void {
    // Called after every outcome: the idle check walks the lanes, so only when someone waits.
    if (this.#idleWaiters.length === 0 || !this.#isIdle()) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }
}
