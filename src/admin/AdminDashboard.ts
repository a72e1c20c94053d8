import type { Express } from "express";
import { AdminSessions } from "./AdminSessions.ts";
import { createAdminRouter } from "./adminRouter.ts";
import { readAdminState, type AdminState } from "./adminState.ts";
import type { AdminDashboardOptions } from "./options.ts";
import { ThroughputMeter } from "./ThroughputMeter.ts";

export type { AdminDashboardOptions, PluginStatus } from "./options.ts";

/** The path the dashboard is served under, on the appservice listener. */
export const ADMIN_PATH = "/admin";

const DEFAULT_SESSION_TTL_MS = 12 * 3_600_000;

/**
 * The operator dashboard: outbox lanes, recent sends, dead letters with a retry button, plugins,
 * and sends per minute over the last hour. Create it before the outbox starts sending (it counts
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
        store: this.#options.store,
        outbox: this.#options.outbox,
        log: this.#options.logger,
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
      limits: { recent: o.recentLimit ?? 25, dead: o.deadLimit ?? 100, lanes: o.laneLimit ?? 50 },
      now: o.now ?? Date.now,
    });
  }
}
