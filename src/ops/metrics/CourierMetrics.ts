import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { LaneOwnership } from "../../inbound/LaneOwnership.ts";
import type { Outbox } from "../../outbox/Outbox.ts";
import type { OutboxRow } from "../../store/OutboxStore.ts";
import type { JournaledCounts } from "../../inbound/options.ts";
import type { HandlerRun } from "../../plugins/PluginHost.ts";
import { MatrixNetworkError } from "../../matrix/MatrixError.ts";

/** Lanes reported one by one in `courier_outbox_lane_pending`: the deepest, so a scrape stays small. */
const TOP_LANES = 20;

/** The latency buckets of a send, seconds: from a local homeserver (ms) to a slow federation (s). */
const SEND_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * The framework's Prometheus metrics, in a registry of its own (two instances in one process,
 * as in tests, do not clash). Fed by the outbox's events and the runtime's hooks; queue depths
 * are read from the store at scrape time.
 */
export class CourierMetrics {
  readonly registry = new Registry();
  readonly #transactions = new Counter({
    name: "courier_inbound_transactions_total",
    help: "Transactions pushed by the homeserver and newly journaled (duplicates not counted).",
    registers: [this.registry],
  });
  readonly #items = new Counter({
    name: "courier_inbound_items_total",
    help: "Items of journaled transactions, by kind (events, ephemeral, toDevice, e2ee).",
    labelNames: ["kind"],
    registers: [this.registry],
  });
  readonly #rejected = new Counter({
    name: "courier_inbound_rejected_total",
    help: "Malformed items journaled as rejected, never dispatched (`courier inbound list --state rejected`).",
    registers: [this.registry],
  });
  readonly #inboundDead = new Counter({
    name: "courier_inbound_dead_total",
    help: "Items dead-lettered: a handler failed every try, or the item's dispatch budget ran out.",
    registers: [this.registry],
  });
  readonly #journalFailures = new Counter({
    name: "courier_inbound_journal_failures_total",
    help: "Transactions answered 500 because the store could not journal them.",
    registers: [this.registry],
  });
  readonly #handlerSeconds = new Histogram({
    name: "courier_handler_duration_seconds",
    help: "Duration of one try of a plugin handler.",
    labelNames: ["plugin", "handler"],
    buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10, 30],
    registers: [this.registry],
  });
  readonly #handlerFailures = new Counter({
    name: "courier_handler_failures_total",
    help: "Tries of a plugin handler that threw or timed out.",
    labelNames: ["plugin", "handler"],
    registers: [this.registry],
  });
  readonly #enqueued = new Counter({
    name: "courier_outbox_enqueued_total",
    help: "Requests journaled by the outbox, by kind (send, state, redact, toDevice).",
    labelNames: ["kind"],
    registers: [this.registry],
  });
  readonly #sent = new Counter({
    name: "courier_outbox_sent_total",
    help: "Requests the homeserver accepted, by kind.",
    labelNames: ["kind"],
    registers: [this.registry],
  });
  readonly #retried = new Counter({
    name: "courier_outbox_retried_total",
    help: "Failed attempts that will be retried (429, 5xx, network, timeout), by kind.",
    labelNames: ["kind"],
    registers: [this.registry],
  });
  readonly #dead = new Counter({
    name: "courier_outbox_dead_total",
    help: "Requests refused for good and dead-lettered, by kind.",
    labelNames: ["kind"],
    registers: [this.registry],
  });
  readonly #rateLimited = new Counter({
    name: "courier_outbox_rate_limited_total",
    help: "429 answers, by sender.",
    labelNames: ["sender"],
    registers: [this.registry],
  });
  readonly #sendSeconds = new Histogram({
    name: "courier_outbox_send_duration_seconds",
    help: "From the first attempt of a request to the homeserver's acceptance (retries included).",
    buckets: SEND_BUCKETS,
    registers: [this.registry],
  });
  readonly #reachable = new Gauge({
    name: "courier_homeserver_up",
    help: "1 when the homeserver answered the last request or ping, 0 when it was unreachable.",
    registers: [this.registry],
  });

  /** Registers the gauges read at scrape time and the process metrics (memory, CPU, event loop). */
  constructor(outbox: Pick<Outbox, "stats">) {
    collectDefaultMetrics({ register: this.registry, prefix: "courier_" });
    // One store read per scrape, shared by the gauges below.
    let last: { at: number; stats: ReturnType<typeof outbox.stats> } | undefined;
    const stats = () => {
      if (!last || Date.now() - last.at > 1_000) last = { at: Date.now(), stats: outbox.stats() };
      return last.stats;
    };
    new Gauge({
      name: "courier_outbox_pending",
      help: "Requests journaled and not yet settled.",
      registers: [this.registry],
      async collect() {
        this.set((await stats()).totals.pending);
      },
    });
    new Gauge({
      name: "courier_outbox_lane_pending",
      help: `Pending requests of the ${TOP_LANES} deepest lanes (room:<id> or todevice:<sender>).`,
      labelNames: ["lane"],
      registers: [this.registry],
      async collect() {
        this.reset();
        const lanes = [...(await stats()).lanes].sort((a, b) => b.pending - a.pending);
        for (const lane of lanes.slice(0, TOP_LANES)) this.set({ lane: lane.lane }, lane.pending);
      },
    });
    new Gauge({
      name: "courier_outbox_oldest_pending_seconds",
      help: "Age of the oldest pending request (0 when none).",
      registers: [this.registry],
      async collect() {
        const oldest = Math.min(...(await stats()).lanes.map((l) => l.oldestCreatedAt));
        this.set(Number.isFinite(oldest) ? (Date.now() - oldest) / 1000 : 0);
      },
    });
  }

  /** Encryption: devices loaded, and encrypted events waiting aside for their keys. */
  watchCrypto(crypto: { devices(): number; parked(): Promise<number> }): void {
    new Gauge({
      name: "courier_crypto_devices",
      help: "Devices (OlmMachines) of the bot and ghosts loaded in this process.",
      registers: [this.registry],
      collect() {
        this.set(crypto.devices());
      },
    });
    new Gauge({
      name: "courier_crypto_parked_events",
      help: "Encrypted events whose room key has not come: handled when it comes.",
      registers: [this.registry],
      async collect() {
        this.set(await crypto.parked());
      },
    });
  }

  /** Lanes this instance holds, when several instances share the store (PostgreSQL). */
  watchOwnership(ownership: Readonly<Record<"outbox" | "inbound", Pick<LaneOwnership, "ownedCount">>>): void {
    new Gauge({
      name: "courier_lanes_owned",
      help: "Lanes (rooms, to-device senders) this instance holds the lease of, by work: outbox (sending) or inbound (dispatching).",
      labelNames: ["work"],
      registers: [this.registry],
      collect() {
        for (const work of ["outbox", "inbound"] as const) this.set({ work }, ownership[work].ownedCount());
      },
    });
  }

  /** Follows the outbox's events. */
  watchOutbox(outbox: Outbox): void {
    const kind = (row: OutboxRow) => ({ kind: row.kind });
    outbox.on("enqueued", (row) => this.#enqueued.inc(kind(row)));
    outbox.on("sent", (row, _eventId, latencyMs) => {
      this.#sent.inc(kind(row));
      this.#sendSeconds.observe(latencyMs / 1000);
      this.#reachable.set(1);
    });
    outbox.on("dead", (row) => {
      this.#dead.inc(kind(row));
      this.#reachable.set(1);
    });
    outbox.on("rateLimited", (sender) => this.#rateLimited.inc({ sender }));
    outbox.on("retry", (row, _reason, _delay, error) => {
      this.#retried.inc(kind(row));
      this.#reachable.set(error instanceof MatrixNetworkError ? 0 : 1);
    });
  }

  transactionJournaled(counts: JournaledCounts, rejected: number): void {
    this.#transactions.inc();
    for (const [kind, n] of Object.entries(counts)) if (n > 0) this.#items.inc({ kind }, n);
    if (rejected > 0) this.#rejected.inc(rejected);
  }

  inboundDead(): void {
    this.#inboundDead.inc();
  }

  journalFailed(): void {
    this.#journalFailures.inc();
  }

  handlerRan(run: HandlerRun): void {
    const labels = { plugin: run.plugin, handler: run.handler };
    this.#handlerSeconds.observe(labels, run.durationMs / 1000);
    if (!run.ok) this.#handlerFailures.inc(labels);
  }

  homeserverReachable(up: boolean): void {
    this.#reachable.set(up ? 1 : 0);
  }

  /** The exposition text and its content type, for GET /metrics. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
