import { EventEmitter } from "node:events";
import PQueue from "p-queue";
import { pino, type Logger } from "pino";
import type { DeviceId, TxnId, UserId } from "../ids.ts";
import type { DeadReason, InsertOutcome, OutboxRow, OutboxStore } from "../store/OutboxStore.ts";
import { JournalUnavailableError, OutboxStoppedError } from "../errors.ts";
import { OutboxLane } from "./OutboxLane.ts";
import { TokenBucket, type RateOptions } from "./TokenBucket.ts";
import { backoffDelay, classifyFailure, type RetryOptions } from "./classifyFailure.ts";
import { DEFAULT_TO_DEVICE_LIMITS } from "./chunkToDevice.ts";
import { OUTBOX_DEFAULTS, type OutboxOptions, type OutboxTransport } from "./options.ts";
import { fromStore, rowsFor, type RowSettings } from "./rows.ts";
import { Deliveries, deadLetterOf, DROPPED } from "./deliveries.ts";
import { Settlements } from "./Settlements.ts";
import { CauseScope } from "./CauseScope.ts";
import type { Enqueued, EventSealer, OutboxEvents, OutboxItem, OutboxStats, SendItem } from "./types.ts";

// The outbox's types live in types.ts; importable from here too, as they always were.

/** Requests a lane sends in a row, when other lanes wait for a queue slot, before it gives its slot up. */
const LANE_TURN = 8;

/**
 * The durable, rate-limited outbound queue. Every request is a committed row before a byte is
 * sent, carries a txnId derived from its cause, and is retried byte for byte until the
 * homeserver accepts it or refuses it for good. Requests of one lane leave in order; lanes run
 * concurrently up to `maxConcurrency`.
 */
/** The fewest rows a lane holds when `maxHeldRows` is shared among many lanes. */
const MIN_WINDOW = 16;

export class Outbox extends EventEmitter<OutboxEvents> {
  readonly #store: OutboxStore;
  readonly #transport: OutboxTransport;
  readonly #rowSettings: RowSettings;
  readonly #queue: PQueue;
  readonly #rate: RateOptions;
  readonly #rateBySender: Readonly<Record<string, Partial<RateOptions>>>;
  readonly #retry: RetryOptions;
  readonly #timeoutMs: number;
  readonly #window: number;
  readonly #maxHeld: number;
  readonly #stalledLaneMs: number;
  readonly #log: Logger;
  readonly #random: () => number;
  readonly #lanes = new Map<string, OutboxLane>();
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #deliveries: Deliveries;
  readonly #settlements: Settlements;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #idleWaiters: Array<() => void> = [];
  readonly #ownership: OutboxOptions["ownership"];
  readonly #sealer: EventSealer | undefined;
  #started = false;
  #rescanning: Promise<void> = Promise.resolve();
  /**
   * Dropped by an operator while a lane held them at its head (waiting for a retry or a token) or
   * while a load that may return them was under way: skipped when they come up. Usually empty;
   * the send path only checks its size.
   */
  readonly #dropped = new Set<string>();
  #stopped = false;
  #counters = { sent: 0, retried: 0, dead: 0, rateLimited: 0 };

  constructor(options: OutboxOptions) {
    super();
    this.#store = options.store;
    this.#transport = options.transport;
    this.#rowSettings = {
      appserviceId: options.appserviceId,
      botUserId: options.botUserId,
      deviceId: options.deviceId,
      maxEventBytes: options.maxEventBytes ?? 65_536,
      toDevice: { ...DEFAULT_TO_DEVICE_LIMITS, ...options.toDevice },
      mayActAs: options.mayActAs ?? (() => true),
    };
    this.#queue = new PQueue({ concurrency: options.maxConcurrency ?? OUTBOX_DEFAULTS.maxConcurrency });
    this.#rate = { ...OUTBOX_DEFAULTS.rate, ...options.rate };
    this.#rateBySender = options.rateBySender ?? {};
    this.#retry = { ...OUTBOX_DEFAULTS.retry, ...options.retry };
    this.#timeoutMs = options.requestTimeoutMs ?? OUTBOX_DEFAULTS.requestTimeoutMs;
    this.#window = options.laneWindow ?? 256;
    this.#maxHeld = options.maxHeldRows ?? 8192;
    // Under load a lane's head settles every few ms; 100 ms without one is a homeserver that is
    // down, slow or limiting us, and the rows held for it would only grow the heap.
    this.#stalledLaneMs = options.stalledLaneMs ?? 100;
    this.#log = options.logger ?? pino({ level: "silent" });
    this.#random = options.random ?? Math.random;
    this.#ownership = options.ownership;
    this.#sealer = options.sealer;
    this.#deliveries = new Deliveries(this.#store);
    this.#settlements = new Settlements(this.#store, this.#log, this.#random);
  }

  /** Opens a scope that numbers the requests of one cause for you, in call order, per target. */
  cause(cause: string, defaults: { sender?: UserId; deviceId?: DeviceId } = {}): CauseScope {
    return new CauseScope((item) => this.enqueue(item), cause, defaults);
  }

  /**
   * Journals a request (several for a large to-device map) and resolves once it is committed.
   * Does I/O. An item whose txnId is already journaled changes nothing and reports the existing
   * outcome through `delivered()`. Throws EventTooLargeError for oversized content,
   * NotOurUserError for a sender the appservice may not act as (`mayActAs`), and
   * JournalUnavailableError when the store cannot commit; none of them journals or sends.
   */
  async enqueue(item: OutboxItem): Promise<Enqueued> {
    const rows = rowsFor(
      item.kind === "send" && this.#sealer ? await this.#seal(item) : item,
      this.#rowSettings,
    );
    let outcomes: InsertOutcome[];
    try {
      outcomes = await this.#store.insert(rows);
    } catch (error) {
      this.#log.error({ err: error, txnIds: rows.map((r) => r.txnId) }, "could not journal; nothing sent");
      throw new JournalUnavailableError(error);
    }
    for (const outcome of outcomes) {
      if (!outcome.inserted) continue;
      this.#accept(outcome.row);
      this.emit("enqueued", outcome.row);
    }
    const txnIds = rows.map((r) => r.txnId);
    return {
      txnId: txnIds[0] as TxnId,
      txnIds,
      duplicate: outcomes.every((o) => !o.inserted),
      delivered: () => this.#deliveries.wait(txnIds),
    };
  }

  /** The event to journal for a room send when a sealer encrypts: what the sealer makes of it. */
  #seal(item: SendItem): Promise<SendItem> {
    const [plain] = rowsFor(item, this.#rowSettings);
    return this.#sealer!.seal(
      { ...item, sender: plain!.sender as UserId },
      async () => (await this.#store.get(plain!.txnId)) !== undefined,
    );
  }

  /** Starts sending: loads every lane with pending rows and replays them as journaled. Does I/O. */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#stopped = false;
    this.#settlements.start();
    await this.#ownership?.start({
      owned: (lanes) => {
        for (const key of lanes) if (!this.#lanes.has(key)) this.#pump(this.#laneFor(key, false));
      },
      grew: (lanes) => {
        for (const key of lanes) if (this.#ownership!.owns(key)) this.#grew(key);
      },
      busy: (key) => this.#lanes.get(key)?.busy ?? false,
    });
    const ownership = this.#ownership;
    const lanes = (await this.#store.pendingLanes()).filter((key) => ownership?.owns(key) ?? true);
    this.#log.info({ lanes: lanes.length }, "outbox started");
    for (const key of lanes) this.#pump(this.#laneFor(key, false));
  }

  /**
   * Takes requests out of the queue for good (state `dropped`, kept as a record); returns how many
   * pending or dead ones it dropped. A request this outbox holds is not sent unless it is already
   * on the wire; its waiters reject with a DeadLetterError (COURIER_DROPPED). Does I/O.
   */
  async drop(txnIds: readonly TxnId[]): Promise<number> {
    const dropped = await this.#store.drop(txnIds);
    const ids = new Set<TxnId>(txnIds);
    const mayBeOnTheWire = new Set<TxnId>();
    for (const lane of [...this.#lanes.values()]) {
      // A busy lane's head may be on the wire: too late to hold it; skipped if it comes up again.
      const head = lane.busy ? lane.rows[0] : undefined;
      if (head && ids.has(head.txnId)) {
        mayBeOnTheWire.add(head.txnId);
        this.#dropped.add(head.txnId);
      }
      lane.rows = lane.rows.filter((row) => row === head || !ids.has(row.txnId));
      // A load under way may have read them before the drop committed.
      if (lane.loading) for (const id of ids) this.#dropped.add(id);
      this.#pump(lane);
    }
    for (const id of ids) if (!mayBeOnTheWire.has(id)) this.#notDelivered(id);
    return dropped;
  }

  /**
   * Puts dead letters back to pending (operator retry; `"all-dead"`: every one of them, not the
   * dropped) and sends them at once; returns how many it put back. Does I/O.
   */
  async retry(txnIds: readonly TxnId[] | "all-dead"): Promise<number> {
    const requeued = await this.#store.requeue(txnIds);
    if (requeued > 0) {
      await this.rescan().catch((error: unknown) => {
        this.#log.error(
          { err: error },
          "could not load the requeued requests; they are sent at the next start",
        );
      });
    }
    return requeued;
  }

  /**
   * Picks up rows put back to pending by an operator (retry of dead letters), also in a lane that
   * is still sending: those rows are older than its head, so they go next. Rescans run one at a
   * time, so two of them never adopt the same row.
   */
  rescan(): Promise<void> {
    this.#rescanning = this.#rescanning.catch(() => {}).then(() => this.#rescan());
    return this.#rescanning;
  }

  async #rescan(): Promise<void> {
    if (!this.#started) return;
    for (const key of await this.#store.pendingLanes()) {
      const lane = this.#lanes.get(key);
      if (!lane) {
        this.#pump(this.#laneFor(key, false));
        continue;
      }
      // Rows below the head the lane holds now were settled before it got there: pending ones
      // among them were put back.
      const head = lane.rows[0]?.seq ?? lane.lastSeq + 1;
      const older = fromStore(await this.#store.loadLane(key, 0, this.#window)).filter(
        (row) => row.seq < head,
      );
      lane.adopt(older);
      lane.complete = false;
      this.#pump(lane);
    }
  }

  /**
   * Stops sending: no new request leaves; waits for those in flight (at most `deadlineMs`), then
   * commits buffered outcomes. Pending rows stay journaled for the next start.
   */
  async stop(deadlineMs = 10_000): Promise<void> {
    this.#stopped = true;
    this.#started = false;
    this.#settlements.stop();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#queue.clear();
    let deadline: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#queue.onIdle(),
      new Promise<void>((resolve) => (deadline = setTimeout(resolve, deadlineMs))),
    ]);
    clearTimeout(deadline);
    await this.#settlements.commitLast();
    await this.#store.flush().catch((error: unknown) => {
      this.#log.error({ err: error }, "could not commit the last outcomes; they are replayed next start");
    });
    // Given back once nothing is on the wire and the outcomes are committed: the next owner
    // then resends nothing that was delivered.
    await this.#ownership?.stop().catch((error: unknown) => {
      this.#log.error({ err: error }, "could not give the lane leases back; they expire");
    });
    this.#lanes.clear();
    this.#dropped.clear();
    // Nobody is left to settle these; the rows stay journaled for the next start.
    this.#deliveries.failAll(() => new OutboxStoppedError());
    this.#log.info(this.#counters, "outbox stopped");
  }

  /** Resolves when no lane has anything left to send (tests, draining on shutdown). */
  onIdle(): Promise<void> {
    if (this.#isIdle()) return this.#store.flush();
    return new Promise<void>((resolve) => this.#idleWaiters.push(resolve)).then(() => this.#store.flush());
  }

  /** Requests settled by this process since it started (no I/O; progress reports). */
  get counters(): Readonly<{ sent: number; retried: number; dead: number; rateLimited: number }> {
    return { ...this.#counters };
  }

  /** Pending rows per lane and totals from the store, counters of this process. Does I/O. */
  async stats(): Promise<OutboxStats> {
    const [lanes, totals] = await Promise.all([this.#store.laneStats(), this.#store.totals()]);
    return { lanes, totals, ...this.#counters, inFlight: this.#queue.pending };
  }

  #laneFor(key: string, complete: boolean): OutboxLane {
    let lane = this.#lanes.get(key);
    if (!lane) {
      lane = new OutboxLane(key, complete);
      this.#lanes.set(key, lane);
    }
    return lane;
  }

  /** A row was committed. Before start(), start() will find it in the store. */
  #accept(row: OutboxRow): void {
    if (!this.#started) return;
    const ownership = this.#ownership;
    if (ownership) {
      // Another instance may have journaled rows of this lane just before: read them from the
      // store in seq order rather than hold this one. A lane nobody holds becomes ours.
      if (ownership.owns(row.lane)) this.#grew(row.lane);
      else
        void ownership.claim(row.lane).then(
          (ours) => ours && this.#started && this.#grew(row.lane),
          (error: unknown) =>
            this.#log.warn({ err: error, lane: row.lane }, "could not claim a lane; its owner sends it"),
        );
      return;
    }
    // A lane missing from memory has no pending rows (start() loaded them all), so it is complete.
    const lane = this.#laneFor(row.lane, true);
    lane.offer(row, this.#windowNow(), this.#stalledLaneMs);
    this.#pump(lane);
  }

  /** Rows were journaled in a lane this instance owns, maybe by another one: load them in seq order. */
  #grew(key: string): void {
    const lane = this.#lanes.get(key);
    if (!lane) return this.#pump(this.#laneFor(key, false));
    if (lane.loading) lane.grewWhileLoading = true;
    lane.complete = false;
    this.#pump(lane);
  }

  /** Moves a lane forward: schedule its head, load more rows, or retire it when it is empty. */
  #pump(lane: OutboxLane): void {
    if (this.#stopped || lane.busy || lane.loading) return;
    if (this.#ownership && !this.#ownership.owns(lane.key)) {
      // Its lease went to another instance: the rows stay pending in the store for the new owner.
      this.#lanes.delete(lane.key);
      this.#notifyIdle();
      return;
    }
    const head = lane.rows[0];
    if (!head) {
      if (!lane.complete) {
        this.#load(lane);
      } else {
        this.#lanes.delete(lane.key);
        this.#notifyIdle();
      }
      return;
    }
    lane.busy = true;
    if (this.#throttled(lane, head)) return;
    void this.#queue.add(() => this.#run(lane, head));
  }

  /** Takes a token from the row's sender, or frees the lane once the bucket has one (true). */
  #throttled(lane: OutboxLane, row: OutboxRow): boolean {
    const wait = this.#bucket(row.sender).take(Date.now());
    if (wait > 0) this.#later(lane, wait);
    return wait > 0;
  }

  /** Rows one lane may hold now: `laneWindow`, or its share of `maxHeldRows` among the lanes loaded. */
  #windowNow(): number {
    return Math.max(
      MIN_WINDOW,
      Math.min(this.#window, Math.floor(this.#maxHeld / Math.max(1, this.#lanes.size))),
    );
  }

  #load(lane: OutboxLane): void {
    lane.loading = true;
    const window = this.#windowNow();
    this.#store.loadLane(lane.key, lane.lastSeq, window).then(
      (loaded) => {
        let rows = fromStore(loaded);
        if (this.#dropped.size > 0) rows = rows.filter((row) => !this.#dropped.delete(row.txnId));
        // Settled here, not yet in the store: pending there, but delivered.
        lane.loaded(this.#settlements.pendingOf(rows), window);
        this.#pump(lane);
      },
      (error: unknown) => {
        lane.loading = false;
        this.#log.error({ err: error, lane: lane.key }, "could not load outbox lane; retrying");
        lane.busy = true;
        this.#later(lane, backoffDelay(3, this.#retry, this.#random));
      },
    );
  }

  /** A dropped request will not be sent: its waiters reject. No I/O. */
  #notDelivered(txnId: TxnId): void {
    this.#deliveries.failed(txnId, deadLetterOf({ txnId, error: DROPPED }));
  }

  /**
   * Sends a lane's rows one after another in its queue slot, until the lane is empty, must wait
   * (retry, rate limit), or has had its turn while other lanes wait for a slot: one slot per
   * request would cost a queue round per request.
   */
  async #run(lane: OutboxLane, row: OutboxRow): Promise<void> {
    for (let sent = 1; ; sent++) {
      if (!(await this.#attempt(lane, row))) return; // a retry is scheduled; the lane stays busy
      const next = lane.rows[0];
      if (!next || this.#stopped || (sent >= LANE_TURN && this.#queue.size > 0)) break;
      if (this.#throttled(lane, next)) return;
      row = next;
    }
    lane.busy = false;
    this.#pump(lane);
  }

  /** Sends the lane's head once; false when it failed and will be retried later. */
  async #attempt(lane: OutboxLane, row: OutboxRow): Promise<boolean> {
    if (this.#dropped.size > 0 && this.#dropped.delete(row.txnId)) {
      lane.advance();
      this.#log.info({ txnId: row.txnId, lane: lane.key }, "request dropped by an operator; not sent");
      this.#notDelivered(row.txnId);
      return true;
    }
    if (lane.attempts === 0) lane.headStartedAt = performance.now();
    let response: unknown;
    try {
      response = await this.#transport.send(row.request, { timeoutMs: this.#timeoutMs });
    } catch (error) {
      return this.#failed(lane, row, error);
    }
    const eventId = (response as { event_id?: unknown } | undefined)?.event_id;
    const id = typeof eventId === "string" ? eventId : undefined;
    const attempts = lane.attempts + 1;
    lane.advance();
    if (this.#dropped.size > 0) this.#dropped.delete(row.txnId); // dropped while on the wire
    this.#counters.sent++;
    this.#settlements.record({
      seq: row.seq,
      txnId: row.txnId,
      lane: row.lane,
      state: "sent",
      eventId: id,
      attempts,
    });
    this.#deliveries.sent(row.txnId, id);
    this.emit("sent", row, id, performance.now() - lane.headStartedAt);
    return true;
  }

  /** Dead-letters the head (true: the lane goes on) or schedules its retry (false). */
  #failed(lane: OutboxLane, row: OutboxRow, error: unknown): boolean {
    const failure = classifyFailure(error);
    lane.attempts++;
    if (failure.action === "dead") {
      const reason: DeadReason = { errcode: failure.errcode, status: failure.status, reason: failure.reason };
      const attempts = lane.attempts;
      lane.advance();
      this.#counters.dead++;
      if (this.#dropped.size > 0) this.#dropped.delete(row.txnId); // dropped while on the wire
      this.#log.warn({ txnId: row.txnId, lane: lane.key, attempts, ...reason }, "request dead-lettered");
      this.#settlements.record({
        seq: row.seq,
        txnId: row.txnId,
        lane: row.lane,
        state: "dead",
        error: reason,
        attempts,
      });
      this.#deliveries.failed(row.txnId, deadLetterOf({ txnId: row.txnId, error: reason }));
      this.emit("dead", row, reason);
      return true;
    }
    let delay = backoffDelay(lane.attempts, this.#retry, this.#random);
    if (failure.action === "rateLimited") {
      delay = failure.retryAfterMs ?? delay;
      this.#bucket(row.sender).pause(delay, Date.now());
      this.#counters.rateLimited++;
      this.emit("rateLimited", row.sender, delay);
    }
    this.#counters.retried++;
    this.#log.debug(
      { txnId: row.txnId, lane: lane.key, attempt: lane.attempts, delay, reason: failure.reason },
      "request will be retried",
    );
    this.emit("retry", row, failure.reason, delay, error);
    this.#later(lane, delay);
    return false;
  }

  /** Frees the lane after `ms` (it stays busy until then, so nothing overtakes its head). */
  #later(lane: OutboxLane, ms: number): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      lane.busy = false;
      this.#pump(lane);
    }, ms);
    this.#timers.add(timer);
  }

  #bucket(sender: string): TokenBucket {
    let bucket = this.#buckets.get(sender);
    if (!bucket) {
      bucket = new TokenBucket({ ...this.#rate, ...this.#rateBySender[sender] }, Date.now());
      this.#buckets.set(sender, bucket);
    }
    return bucket;
  }

  // A lane leaves memory only when it has nothing pending and nothing in flight.
  #isIdle(): boolean {
    return this.#lanes.size === 0;
  }

  #notifyIdle(): void {
    if (!this.#isIdle()) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }
}
