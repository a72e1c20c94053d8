import type { Express } from "express";
import { FailureThrottle } from "../../http/FailureThrottle.ts";
import { AdminSessions } from "./AdminSessions.ts";
import { createAdminRouter } from "./adminRouter.ts";
import { readAdminState, readInboundPanel, type AdminState, type InboundPanel } from "./adminState.ts";
import type { AdminDashboardOptions } from "./options.ts";
import { ThroughputMeter } from "./ThroughputMeter.ts";

export type { AdminDashboardOptions, DashboardChat, PluginStatus } from "./options.ts";

/** The path the dashboard is served under, on the appservice listener. */
export const ADMIN_PATH = "/admin";

const DEFAULT_SESSION_TTL_MS = 12 * 3_600_000;
const DEFAULT_INBOUND_LIMIT = 25;

/**
 * The operator dashboard: outbox lanes, recent sends, dead letters with a retry button, plugins,
 * sends per minute over the last hour, and the inbound items rejected or given up, with why. Create it before the outbox starts sending (it counts
 * the outbox's `sent` and `dead` events from then on), then `mount` it on the appservice app.
 */
export class AdminDashboard {
  readonly #options: AdminDashboardOptions;
  readonly #meter: ThroughputMeter;
  readonly #sessions: AdminSessions;
  readonly #startedAt: number;

  constructor(options: AdminDashboardOptions) {
    if (typeof options.token !== "string" || options.token.length === 0) {
      throw new TypeError(`Expected \`token\` to be a non-empty string, got ${typeof options.token}`);
    }
    this.#options = options;
    const now = options.now ?? Date.now;
    this.#startedAt = now();
    this.#meter = new ThroughputMeter({ now });
    this.#sessions = new AdminSessions({ ttlMs: options.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS, now });
    options.outbox.on("sent", () => this.#meter.sent());
    options.outbox.on("dead", () => this.#meter.dead());
  }

  /** Mounts the dashboard under `/admin` (pass it in the appservice's `routes` option). No I/O. */
  mount(app: Express): void {
    app.use(
      ADMIN_PATH,
      createAdminRouter({
        token: this.#options.token,
        sessions: this.#sessions,
        state: () => this.state(),
        inbound: () => this.inbound(),
        outbox: this.#options.outbox,
        throttle: this.#options.throttle ?? new FailureThrottle(),
        log: this.#options.logger,
        ...(this.#options.chat ? { chat: this.#options.chat } : {}),
      }),
    );
    this.#options.logger.info({ path: `${ADMIN_PATH}/` }, "operator dashboard enabled");
  }

  /** What `GET /admin/api/state` answers. Does I/O (store queries). */
  state(): Promise<AdminState> {
    const o = this.#options;
    return readAdminState({
      outbox: o.outbox,
      store: o.store,
      plugins: o.plugins,
      about: () => ({ ...o.about?.(), startedAt: this.#startedAt }),
      throughput: () => this.#meter.series(),
      inbound: o.inbound,
      limits: {
        recent: o.recentLimit ?? 25,
        dead: o.deadLimit ?? 100,
        lanes: o.laneLimit ?? 50,
        inbound: o.inboundLimit ?? DEFAULT_INBOUND_LIMIT,
      },
      now: o.now ?? Date.now,
    });
  }

  /** What `GET /admin/api/inbound` answers. Does I/O (journal queries). */
  inbound(): Promise<InboundPanel> {
    return readInboundPanel(this.#options.inbound, this.#options.inboundLimit ?? DEFAULT_INBOUND_LIMIT);
  }
}
