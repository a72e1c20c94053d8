import type { Logger } from "pino";
import { PermanentRemoteError, RemoteUnavailableError } from "../errors.ts";
import { TokenBucket, type RateOptions } from "../outbox/TokenBucket.ts";
import type { PluginStore } from "../store/PluginStore.ts";
import type { MatrixSender, OutgoingMessage } from "./BridgeConnector.ts";
import { Lanes } from "./Lanes.ts";
import { Sequence, padSeq } from "./Sequence.ts";

/** One request to the remote network, keyed by the Matrix event that caused it. */
export type RemoteRequest =
  | { readonly kind: "message"; readonly message: OutgoingMessage }
  | {
      readonly kind: "redact";
      readonly eventId: string;
      readonly channelId: string;
      readonly remoteId: string;
    }
  | {
      readonly kind: "react";
      readonly eventId: string;
      readonly channelId: string;
      readonly remoteId: string;
      readonly key: string;
      readonly sender: MatrixSender;
    };

interface Row {
  readonly seq: number;
  readonly connection: string;
  readonly request: RemoteRequest;
}

/** Where a request stands, under `rout-ev:<event id>`. */
interface Mark {
  readonly seq: number;
  readonly done?: "sent" | "failed";
  readonly at: number;
}

export interface RemoteOutboxOptions {
  readonly store: PluginStore;
  readonly log: Logger;
  /** Sends one request; resolves the remote id of a message when the network gives one. */
  readonly deliver: (request: RemoteRequest) => Promise<string | undefined>;
  /** Told once when a request is given up (reported into its room). */
  readonly failed: (request: RemoteRequest, reason: string) => Promise<void>;
  /** Told once when a request is sent. */
  readonly sent?: (request: RemoteRequest, remoteId: string | undefined) => Promise<void>;
  /** Per connection. */
  readonly rate: RateOptions;
  /** Tokens a request takes (an IRC message split into lines takes one per line). @default 1 */
  readonly cost?: (request: RemoteRequest) => number;
  /** Tries of a failing request (not counting `RemoteUnavailableError`). @default 5 */
  readonly maxAttempts?: number;
  /** @default 500 */
  readonly retryBaseMs?: number;
  /** @default 10000 */
  readonly retryCapMs?: number;
  readonly stopping: AbortSignal;
  /** Done marks are kept this long (a handler re-run after a crash must find them). @default a day */
  readonly keepMarksMs?: number;
}

const eventOf = (r: RemoteRequest): string => (r.kind === "message" ? r.message.eventId : r.eventId);
const channelOf = (r: RemoteRequest): string => (r.kind === "message" ? r.message.channelId : r.channelId);

/**
 * Matrix → remote: a durable queue in the plugin's store. A request is committed (`rout:<seq>`,
 * and `rout-ev:<event id>` marking it) before it is tried; the handler that enqueues it may run
 * again after a crash and finds the mark. Requests of one channel leave in order, through a token
 * bucket per connection; one is marked sent right after the connector resolved. A crash between
 * the connector writing a request and the mark being committed sends it again at restart: the
 * only duplicate this queue can make (remote networks without message ids cannot dedupe it).
 */
export class RemoteOutbox {
  readonly #o: RemoteOutboxOptions;
  readonly #seq = new Sequence();
  readonly #lanes = new Lanes();
  readonly #buckets = new Map<string, TokenBucket>();
  #started = false;
  readonly #early: Row[] = [];

  constructor(options: RemoteOutboxOptions) {
    this.#o = options;
  }

  /** Loads what a previous run left and starts sending. Returns how many requests were waiting. Does I/O. */
  async start(): Promise<number> {
    const { store } = this.#o;
    const keep = this.#o.keepMarksMs ?? 86_400_000;
    for (const { key, value } of await store.list<Mark>("rout-ev:")) {
      this.#seq.seen(value.seq);
      if (value.done && Date.now() - value.at > keep) await store.delete(key);
    }
    const rows = await store.list<Row>("rout:");
    for (const { value } of rows) {
      this.#seq.seen(value.seq);
      const mark = await store.get<Mark>(`rout-ev:${eventOf(value.request)}`);
      if (mark?.done) await store.delete(`rout:${padSeq(value.seq)}`);
      else this.#schedule(value);
    }
    this.#started = true;
    for (const row of this.#early.splice(0)) this.#schedule(row);
    return rows.length;
  }

  /**
   * Journals the request unless its event's request is journaled already; resolves once
   * committed. Does I/O.
   */
  async enqueue(request: RemoteRequest, connection: string): Promise<void> {
    const { store } = this.#o;
    const markKey = `rout-ev:${eventOf(request)}`;
    const mark = await store.get<Mark>(markKey);
    if (mark?.done) return;
    const seq = mark?.seq ?? this.#seq.next();
    if (!mark) await store.set(markKey, { seq, at: Date.now() } satisfies Mark);
    const rowKey = `rout:${padSeq(seq)}`;
    // The mark is there but the row may not be (a crash between the two): write it again.
    if (mark && (await store.get(rowKey)) !== undefined) return;
    const row: Row = { seq, connection, request };
    await store.set(rowKey, row);
    if (this.#started) this.#schedule(row);
    else this.#early.push(row);
  }

  /** Resolves once every request enqueued so far is sent or given up. */
  idle(): Promise<void> {
    return this.#lanes.idle();
  }

  #schedule(row: Row): void {
    this.#lanes.push(channelOf(row.request), () => this.#run(row));
  }

  async #run(row: Row): Promise<void> {
    const { log, stopping } = this.#o;
    const maxAttempts = this.#o.maxAttempts ?? 5;
    let failures = 0;
    let waits = 0;
    while (!stopping.aborted) {
      await this.#token(row);
      if (stopping.aborted) return;
      try {
        const remoteId = await this.#o.deliver(row.request);
        await this.#settle(row, "sent");
        await this.#o.sent?.(row.request, remoteId);
        return;
      } catch (error) {
        const permanent = error instanceof PermanentRemoteError;
        const unavailable = error instanceof RemoteUnavailableError;
        if (!unavailable) failures++;
        if (permanent || failures >= maxAttempts) {
          const reason = error instanceof Error ? error.message : String(error);
          log.warn({ err: error, eventId: eventOf(row.request) }, "remote send given up");
          await this.#settle(row, "failed");
          await this.#o.failed(row.request, reason);
          return;
        }
        if (unavailable) waits++;
        const step = unavailable ? waits : failures;
        const delay = Math.min((this.#o.retryBaseMs ?? 500) * 2 ** (step - 1), this.#o.retryCapMs ?? 10_000);
        log.debug({ err: error, delay }, "remote send failed; trying again");
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  async #settle(row: Row, done: "sent" | "failed"): Promise<void> {
    const { store } = this.#o;
    await store.set(`rout-ev:${eventOf(row.request)}`, { seq: row.seq, done, at: Date.now() } satisfies Mark);
    await store.delete(`rout:${padSeq(row.seq)}`);
  }

  async #token(row: Row): Promise<void> {
    let bucket = this.#buckets.get(row.connection);
    if (!bucket) {
      bucket = new TokenBucket(this.#o.rate, Date.now());
      this.#buckets.set(row.connection, bucket);
    }
    const cost = Math.max(1, this.#o.cost?.(row.request) ?? 1);
    for (let taken = 0; taken < cost && !this.#o.stopping.aborted;) {
      const wait = bucket.take(Date.now());
      if (wait === 0) taken++;
      else await new Promise((r) => setTimeout(r, wait));
    }
  }
}
