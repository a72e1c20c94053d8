import { EventEmitter } from "node:events";
import PQueue from "p-queue";
import { pino, type Logger } from "pino";
import type { DeviceId, EventId, RoomId, TxnId, UserId } from "../ids.ts";
import {
  fromJournal,
  redactRequest,
  roomSendRequest,
  stateRequest,
  toDeviceRequest,
  type MatrixRequest,
  type ToDeviceMessages,
} from "../matrix/requests.ts";
import type {
  DeadReason,
  InsertOutcome,
  NewOutboxRow,
  OutboxRow,
  OutboxStore,
  OutboxTotals,
  LaneStats,
  Settlement,
} from "../store/OutboxStore.ts";
import {
  DeadLetterError,
  EventTooLargeError,
  JournalUnavailableError,
  NotOurUserError,
  OutboxStoppedError,
} from "../errors.ts";
import { deriveTxnId } from "./deriveTxnId.ts";
import type { OutboxKind } from "../store/OutboxStore.ts";
import { OutboxLane } from "./OutboxLane.ts";
import { TokenBucket, type RateOptions } from "./TokenBucket.ts";
import { backoffDelay, classifyFailure, type RetryOptions } from "./classifyFailure.ts";
import { chunkToDevice, DEFAULT_TO_DEVICE_LIMITS, type ToDeviceChunkLimits } from "./chunkToDevice.ts";
import { OUTBOX_DEFAULTS, type OutboxOptions, type OutboxTransport } from "./options.ts";

/** Fields every outbound request carries: who sends it and what caused it. */
interface ItemBase {
  /** Masquerade as this user; @default the appservice's bot user. */
  readonly sender?: UserId | undefined;
  /** Masquerade as this device of the sender (persistent dedupe on Synapse). */
  readonly deviceId?: DeviceId | undefined;
  /** What caused the request (inbound event id, timer slot, webhook delivery id). */
  readonly cause: string;
  /** Position among the requests of the same cause to the same target. */
  readonly ordinal: number;
}

export type OutboxItem =
  | (ItemBase & {
      readonly kind: "send";
      readonly roomId: RoomId;
      readonly eventType: string;
      readonly content: object;
    })
  | (ItemBase & {
      readonly kind: "state";
      readonly roomId: RoomId;
      readonly eventType: string;
      readonly stateKey: string;
      readonly content: object;
    })
  | (ItemBase & {
      readonly kind: "redact";
      readonly roomId: RoomId;
      readonly eventId: string;
      readonly reason?: string;
    })
  | (ItemBase & {
      readonly kind: "sendToDevice";
      readonly eventType: string;
      readonly messages: ToDeviceMessages;
    });

/** The outcome of a delivered request: the event id for room events, nothing for to-device. */
export interface Delivery {
  readonly txnId: TxnId;
  readonly eventId: EventId | undefined;
}

/** What `enqueue` hands back once the request is journaled. */
export interface Enqueued {
  /** The request's txnId (the first chunk's, for a split to-device message). */
  readonly txnId: TxnId;
  /** Every journaled request: several for a to-device map split into chunks. */
  readonly txnIds: readonly TxnId[];
  /** True when every txnId was already journaled: this call changed nothing. */
  readonly duplicate: boolean;
  /**
   * Resolves once every request is accepted by the homeserver; rejects with DeadLetterError if
   * one is dead-lettered. Lazy: nothing is tracked unless you call it.
   */
  delivered(): Promise<Delivery>;
}

export interface OutboxStats {
  readonly lanes: LaneStats[];
  readonly totals: OutboxTotals;
  /** Since this process started. */
  readonly sent: number;
  readonly retried: number;
  readonly dead: number;
  readonly rateLimited: number;
  readonly inFlight: number;
}

export interface OutboxEvents {
  /** A new row was committed (not emitted for a txnId already journaled). */
  enqueued: [row: OutboxRow];
  sent: [row: OutboxRow, eventId: string | undefined, latencyMs: number];
  retry: [row: OutboxRow, reason: string, delayMs: number, error: unknown];
  rateLimited: [sender: string, pauseMs: number];
  dead: [row: OutboxRow, reason: DeadReason];
}

/** How often a sending outbox asks the store whether another process wrote (a drop). */
const VERSION_CHECK_MS = 50;

/** Requests a lane sends in a row, when other lanes wait for a queue slot, before it gives its slot up. */
const LANE_TURN = 8;

/** How a dropped row's waiters learn its fate (`courier outbox drop`). */
const DROPPED: DeadReason = { errcode: "COURIER_DROPPED", status: 0, reason: "dropped by an operator" };

/** Backoff of outcomes the store could not record. */
const SETTLE_RETRY: RetryOptions = { baseMs: 1_000, capMs: 30_000 };

interface Waiter {
  resolve(eventId: string | undefined): void;
  reject(error: Error): void;
}

/**
 * The durable, rate-limited outbound queue. Every request is a committed row before a byte is
 * sent, carries a txnId derived from its cause, and is retried byte for byte until the
 * homeserver accepts it or refuses it for good. Requests of one lane leave in order; lanes run
 * concurrently up to `maxConcurrency`.
 */
export class Outbox extends EventEmitter<OutboxEvents> {
  readonly #store: OutboxStore;
  readonly #transport: OutboxTransport;
  readonly #appserviceId: string;
  readonly #botUserId: UserId;
  readonly #deviceId: DeviceId | undefined;
  readonly #queue: PQueue;
  readonly #rate: RateOptions;
  readonly #rateBySender: Readonly<Record<string, Partial<RateOptions>>>;
  readonly #retry: RetryOptions;
  readonly #timeoutMs: number;
  readonly #maxEventBytes: number;
  readonly #toDevice: ToDeviceChunkLimits;
  readonly #window: number;
  readonly #stalledLaneMs: number;
  readonly #log: Logger;
  readonly #random: () => number;
  readonly #mayActAs: (userId: UserId) => boolean;
  readonly #lanes = new Map<string, OutboxLane>();
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #waiters = new Map<string, Waiter[]>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #idleWaiters: Array<() => void> = [];
  /** Outcomes the store could not record yet, by txnId. */
  readonly #unsettled = new Map<string, Settlement>();
  #settleTimer: NodeJS.Timeout | undefined;
  #settleFailures = 0;
  #started = false;
  #rescanning: Promise<void> = Promise.resolve();
  /**
   * Bumped when another process committed to the store (an operator dropped a row): a held row
   * stamped with an older epoch is re-read before it is sent.
   */
  #epoch = 0;
  #externalVersion = 0;
  #versionCheckedAt = Number.NEGATIVE_INFINITY;
  readonly #stamps = new WeakMap<OutboxRow, number>();
  #stopped = false;
  #counters = { sent: 0, retried: 0, dead: 0, rateLimited: 0 };

  constructor(options: OutboxOptions) {
    super();
    this.#store = options.store;
    this.#transport = options.transport;
    this.#appserviceId = options.appserviceId;
    this.#botUserId = options.botUserId;
    this.#deviceId = options.deviceId;
    this.#queue = new PQueue({ concurrency: options.maxConcurrency ?? OUTBOX_DEFAULTS.maxConcurrency });
    this.#rate = { ...OUTBOX_DEFAULTS.rate, ...options.rate };
    this.#rateBySender = options.rateBySender ?? {};
    this.#retry = { ...OUTBOX_DEFAULTS.retry, ...options.retry };
    this.#timeoutMs = options.requestTimeoutMs ?? OUTBOX_DEFAULTS.requestTimeoutMs;
    this.#maxEventBytes = options.maxEventBytes ?? 65_536;
    this.#toDevice = { ...DEFAULT_TO_DEVICE_LIMITS, ...options.toDevice };
    this.#window = options.laneWindow ?? 256;
    // Under load a lane's head settles every few ms; 100 ms without one is a homeserver that is
    // down, slow or limiting us, and the rows held for it would only grow the heap.
    this.#stalledLaneMs = options.stalledLaneMs ?? 100;
    this.#log = options.logger ?? pino({ level: "silent" });
    this.#random = options.random ?? Math.random;
    this.#mayActAs = options.mayActAs ?? (() => true);
  }

  /** Opens a scope that numbers the requests of one cause for you, in call order, per target. */
  cause(cause: string, defaults: { sender?: UserId; deviceId?: DeviceId } = {}): CauseScope {
    return new CauseScope(this, cause, defaults);
  }

  /**
   * Journals a request (several for a large to-device map) and resolves once it is committed.
   * Does I/O. An item whose txnId is already journaled changes nothing and reports the existing
   * outcome through `delivered()`. Throws EventTooLargeError for oversized content,
   * NotOurUserError for a sender the appservice may not act as (`mayActAs`), and
   * JournalUnavailableError when the store cannot commit; none of them journals or sends.
   */
  async enqueue(item: OutboxItem): Promise<Enqueued> {
    const rows = this.#rowsFor(item);
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
      delivered: () => this.#delivered(txnIds),
    };
  }

  /** Starts sending: loads every lane with pending rows and replays them as journaled. Does I/O. */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#stopped = false;
    this.#externalVersion = this.#store.externalVersion?.() ?? 0;
    const lanes = await this.#store.pendingLanes();
    this.#log.info({ lanes: lanes.length }, "outbox started");
    for (const key of lanes) this.#pump(this.#laneFor(key, false));
  }

  /**
   * Picks up rows put back to pending behind the outbox's back (operator retry of dead letters),
   * also in a lane that is still sending: those rows are older than its head, so they go next.
   * Rescans run one at a time, so two of them never adopt the same row.
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
      this.#stamp(older);
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
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#queue.clear();
    let deadline: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#queue.onIdle(),
      new Promise<void>((resolve) => (deadline = setTimeout(resolve, deadlineMs))),
    ]);
    clearTimeout(deadline);
    clearTimeout(this.#settleTimer);
    this.#settleTimer = undefined;
    // A last try; what still fails stays pending and is replayed (and deduplicated) next start.
    if (this.#unsettled.size > 0) await this.#store.settle([...this.#unsettled.values()]).catch(() => {});
    this.#unsettled.clear();
    await this.#store.flush().catch((error: unknown) => {
      this.#log.error({ err: error }, "could not commit the last outcomes; they are replayed next start");
    });
    this.#lanes.clear();
    // Nobody is left to settle these; the rows stay journaled for the next start.
    for (const txnId of [...this.#waiters.keys()])
      this.#settleWaiters(txnId, (w) => w.reject(new OutboxStoppedError()));
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

  #rowsFor(item: OutboxItem): NewOutboxRow[] {
    const sender = item.sender ?? this.#botUserId;
    if (sender !== this.#botUserId && !this.#mayActAs(sender)) throw new NotOurUserError(sender);
    const deviceId = item.deviceId ?? this.#deviceId;
    // The appservice's own user needs no `user_id` unless a device is named: shorter paths, and
    // the same request a plain client would send.
    const as = sender === this.#botUserId && !deviceId ? undefined : { userId: sender, deviceId };
    const id = (kind: OutboxKind, target: string, part = 0) =>
      deriveTxnId({
        appserviceId: this.#appserviceId,
        sender,
        kind,
        target,
        cause: item.cause,
        ordinal: item.ordinal,
        part,
      });
    const row = (kind: OutboxKind, lane: string, txnId: TxnId, request: MatrixRequest): NewOutboxRow => ({
      txnId,
      lane,
      kind,
      sender,
      request,
    });
    switch (item.kind) {
      case "send": {
        const txnId = id("send", `${item.roomId}\u0000${item.eventType}`);
        const request = roomSendRequest({
          roomId: item.roomId,
          eventType: item.eventType,
          txnId,
          content: item.content,
          as,
        });
        this.#checkSize(request, `The ${item.eventType} content for ${item.roomId}`);
        return [row("send", `room:${item.roomId}`, txnId, request)];
      }
      case "state": {
        const txnId = id("state", `${item.roomId}\u0000${item.eventType}\u0000${item.stateKey}`);
        const request = stateRequest({ ...item, as });
        this.#checkSize(request, `The ${item.eventType} state content for ${item.roomId}`);
        return [row("state", `room:${item.roomId}`, txnId, request)];
      }
      case "redact": {
        const txnId = id("redact", `${item.roomId}\u0000${item.eventId}`);
        return [row("redact", `room:${item.roomId}`, txnId, redactRequest({ ...item, txnId, as }))];
      }
      case "sendToDevice": {
        // Every message carries an id of its own (stable across replays), so that a recipient can
        // drop the duplicate a homeserver may deliver after losing its in-memory dedupe.
        const messages = withMessageIds(item.messages, id("sendToDevice", item.eventType));
        return chunkToDevice(messages, this.#toDevice).map((messages, part) => {
          const txnId = id("sendToDevice", item.eventType, part);
          return row(
            "sendToDevice",
            `todevice:${sender}`,
            txnId,
            toDeviceRequest({ eventType: item.eventType, txnId, messages, as }),
          );
        });
      }
    }
  }

  #checkSize(request: MatrixRequest, what: string): void {
    const bytes = Buffer.byteLength(request.body ?? "");
    if (bytes > this.#maxEventBytes) throw new EventTooLargeError(what, bytes, this.#maxEventBytes);
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
    // A lane missing from memory has no pending rows (start() loaded them all), so it is complete.
    const lane = this.#laneFor(row.lane, true);
    // Only a row the lane holds needs a freshness stamp; one left in the store is stamped when loaded.
    if (lane.offer(row, this.#window, this.#stalledLaneMs)) this.#stamp([row]);
    this.#pump(lane);
  }

  /** Moves a lane forward: schedule its head, load more rows, or retire it when it is empty. */
  #pump(lane: OutboxLane): void {
    if (this.#stopped || lane.busy || lane.loading) return;
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

  #load(lane: OutboxLane): void {
    lane.loading = true;
    this.#store.loadLane(lane.key, lane.lastSeq, this.#window).then(
      (loaded) => {
        const rows = fromStore(loaded);
        this.#stamp(rows);
        // Settled here, not yet in the store: pending there, but delivered.
        lane.loaded(
          this.#unsettled.size === 0 ? rows : rows.filter((r) => !this.#unsettled.has(r.txnId)),
          this.#window,
        );
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

  #stamp(rows: readonly OutboxRow[]): void {
    for (const row of rows) this.#stamps.set(row, this.#epoch);
  }

  /** True when no other process wrote to the store since the row was loaded (no I/O). */
  #isFresh(row: OutboxRow): boolean {
    // Asking costs a few µs, a real share of a send: at most every 50 ms. A drop committed in
    // between is like one committed while the request was on the wire: too late to hold it.
    const now = performance.now();
    if (now - this.#versionCheckedAt >= VERSION_CHECK_MS) {
      this.#versionCheckedAt = now;
      const version = this.#store.externalVersion?.() ?? 0;
      if (version !== this.#externalVersion) {
        this.#externalVersion = version;
        this.#epoch++;
      }
    }
    return (this.#stamps.get(row) ?? -1) >= this.#epoch;
  }

  /** False when another process took the row out of the queue (dropped) since it was loaded. */
  async #stillPending(row: OutboxRow): Promise<boolean> {
    const current = await this.#store.get(row.txnId);
    this.#stamps.set(row, this.#epoch);
    return current?.state === "pending";
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
    if (!this.#isFresh(row) && !(await this.#stillPending(row))) {
      lane.advance();
      this.#log.info({ txnId: row.txnId, lane: lane.key }, "request dropped by an operator; not sent");
      this.#settleWaiters(row.txnId, (w) => w.reject(deadLetterOf({ txnId: row.txnId, error: DROPPED })));
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
    this.#counters.sent++;
    this.#settle({ seq: row.seq, txnId: row.txnId, lane: row.lane, state: "sent", eventId: id, attempts });
    this.#settleWaiters(row.txnId, (w) => w.resolve(id));
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
      this.#log.warn({ txnId: row.txnId, lane: lane.key, attempts, ...reason }, "request dead-lettered");
      this.#settle({
        seq: row.seq,
        txnId: row.txnId,
        lane: row.lane,
        state: "dead",
        error: reason,
        attempts,
      });
      const deadError = deadLetterOf({ txnId: row.txnId, error: reason });
      this.#settleWaiters(row.txnId, (w) => w.reject(deadError));
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

  /**
   * Records an outcome. If the store cannot (disk full, read-only, connection lost), the outcome
   * is kept here and committed later with a backoff: until then the row is pending in the
   * store, and a lane loaded meanwhile must not send it again.
   */
  #settle(settlement: Settlement): void {
    this.#store.settle([settlement]).catch((error: unknown) => {
      this.#unsettled.set(settlement.txnId, settlement);
      this.#retrySettlementsLater(error);
    });
  }

  #retrySettlementsLater(error: unknown): void {
    if (this.#settleTimer || this.#stopped) return;
    this.#settleFailures++;
    const delay = backoffDelay(this.#settleFailures, SETTLE_RETRY, this.#random);
    if (this.#settleFailures === 1)
      this.#log.error({ err: error, delay }, "could not record outcomes in the journal; retrying");
    this.#settleTimer = setTimeout(() => {
      this.#settleTimer = undefined;
      const batch = [...this.#unsettled.values()];
      this.#store.settle(batch).then(
        () => {
          for (const s of batch) if (this.#unsettled.get(s.txnId) === s) this.#unsettled.delete(s.txnId);
          if (this.#settleFailures > 0) this.#log.info({ outcomes: batch.length }, "outcomes recorded again");
          this.#settleFailures = 0;
          if (this.#unsettled.size > 0) this.#retrySettlementsLater(undefined);
        },
        (e: unknown) => this.#retrySettlementsLater(e),
      );
    }, delay);
  }

  #bucket(sender: string): TokenBucket {
    let bucket = this.#buckets.get(sender);
    if (!bucket) {
      bucket = new TokenBucket({ ...this.#rate, ...this.#rateBySender[sender] }, Date.now());
      this.#buckets.set(sender, bucket);
    }
    return bucket;
  }

  async #delivered(txnIds: readonly TxnId[]): Promise<Delivery> {
    const ids = await Promise.all(txnIds.map((txnId) => this.#deliveredOne(txnId)));
    return { txnId: txnIds[0] as TxnId, eventId: ids[0] as EventId | undefined };
  }

  #deliveredOne(txnId: TxnId): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      // Register first, then look: an outcome settled in between is already in the store's view.
      const list = this.#waiters.get(txnId) ?? [];
      list.push({ resolve, reject });
      this.#waiters.set(txnId, list);
      this.#store.get(txnId).then((row) => {
        if (row?.state === "sent") this.#settleWaiters(txnId, (w) => w.resolve(row.eventId));
        if (row?.state === "dead") this.#settleWaiters(txnId, (w) => w.reject(deadLetterOf(row)));
        if (row?.state === "dropped")
          this.#settleWaiters(txnId, (w) => w.reject(deadLetterOf({ txnId, error: DROPPED })));
      }, reject);
    });
  }

  #settleWaiters(txnId: string, settle: (waiter: Waiter) => void): void {
    const list = this.#waiters.get(txnId);
    if (!list) return;
    this.#waiters.delete(txnId);
    for (const waiter of list) settle(waiter);
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

/**
 * The unspecced `org.matrix.msgid` field Synapse logs and clients use to tell to-device messages
 * apart; set from the request's txnId (unique per message, the same on every replay) unless the
 * sender set one.
 */
export const TO_DEVICE_MESSAGE_ID = "org.matrix.msgid";

function withMessageIds(messages: ToDeviceMessages, messageId: string): ToDeviceMessages {
  const out: ToDeviceMessages = {};
  for (const [user, devices] of Object.entries(messages)) {
    const stamped: Record<string, object> = {};
    for (const [device, content] of Object.entries(devices)) {
      const plain = typeof content === "object" && content !== null && !Array.isArray(content);
      stamped[device] =
        plain && !(TO_DEVICE_MESSAGE_ID in content)
          ? { ...content, [TO_DEVICE_MESSAGE_ID]: messageId }
          : content;
    }
    out[user] = stamped;
  }
  return out;
}

/**
 * Rows read back from the store, with their requests' masquerade fields again: the store keeps
 * the method, path and body only. A row this process built keeps them and is passed as it is.
 */
function fromStore(rows: readonly OutboxRow[]): readonly OutboxRow[] {
  return rows.map((row) => {
    if (row.request.userId || row.request.deviceId) return row;
    const request = fromJournal(row.request);
    return request === row.request ? row : { ...row, request };
  });
}

function deadLetterOf(row: Pick<OutboxRow, "txnId" | "error">): DeadLetterError {
  const error = row.error ?? { errcode: "M_UNKNOWN", status: 0, reason: "unknown" };
  return new DeadLetterError(row.txnId, error.errcode, error.status, error.reason);
}

/**
 * The requests of one cause, numbered in call order per target. Numbering happens when the
 * method is called, not when its promise settles, so `Promise.all([send(a), send(b)])` gives a
 * and b the same ordinals on every replay.
 */
export class CauseScope {
  readonly #outbox: Outbox;
  readonly #cause: string;
  readonly #defaults: { sender?: UserId; deviceId?: DeviceId };
  readonly #ordinals = new Map<string, number>();

  constructor(outbox: Outbox, cause: string, defaults: { sender?: UserId; deviceId?: DeviceId }) {
    this.#outbox = outbox;
    this.#cause = cause;
    this.#defaults = defaults;
  }

  /** Sends a room event (`m.room.message` unless `eventType` says otherwise). */
  send(roomId: RoomId, content: object, opts: SendOptions & { eventType?: string } = {}): Promise<Enqueued> {
    const eventType = opts.eventType ?? "m.room.message";
    return this.#enqueue(opts, `send\u0000${roomId}\u0000${eventType}`, (base) => ({
      ...base,
      kind: "send",
      roomId,
      eventType,
      content,
    }));
  }

  sendState(
    roomId: RoomId,
    eventType: string,
    stateKey: string,
    content: object,
    opts: SendOptions = {},
  ): Promise<Enqueued> {
    return this.#enqueue(opts, `state\u0000${roomId}\u0000${eventType}\u0000${stateKey}`, (base) => ({
      ...base,
      kind: "state",
      roomId,
      eventType,
      stateKey,
      content,
    }));
  }

  redact(roomId: RoomId, eventId: string, reason?: string, opts: SendOptions = {}): Promise<Enqueued> {
    return this.#enqueue(opts, `redact\u0000${roomId}\u0000${eventId}`, (base) => ({
      ...base,
      kind: "redact",
      roomId,
      eventId,
      ...(reason === undefined ? {} : { reason }),
    }));
  }

  sendToDevice(eventType: string, messages: ToDeviceMessages, opts: SendOptions = {}): Promise<Enqueued> {
    return this.#enqueue(opts, `toDevice\u0000${eventType}`, (base) => ({
      ...base,
      kind: "sendToDevice",
      eventType,
      messages,
    }));
  }

  #enqueue(opts: SendOptions, target: string, make: (base: ItemBase) => OutboxItem): Promise<Enqueued> {
    const sender = opts.sender ?? this.#defaults.sender;
    const key = `${sender ?? ""}\u0000${target}`;
    const ordinal = this.#ordinals.get(key) ?? 0;
    this.#ordinals.set(key, ordinal + 1);
    return this.#outbox.enqueue(
      make({ sender, deviceId: opts.deviceId ?? this.#defaults.deviceId, cause: this.#cause, ordinal }),
    );
  }
}

export interface SendOptions {
  readonly sender?: UserId;
  readonly deviceId?: DeviceId;
}
