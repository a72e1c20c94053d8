import type { Logger } from "pino";
import type { FailureThrottle } from "../../http/FailureThrottle.ts";
import type { Outbox } from "../../outbox/Outbox.ts";
import type { InboundJournal } from "../../inbound/InboundJournal.ts";
import type { OutboxStore } from "../../store/OutboxStore.ts";

/** A plugin as the host reports it. */
export interface PluginStatus {
  readonly name: string;
  readonly status: string;
  readonly error?: string;
}

/**
 * The chat page (`/admin/chat`): the browser logs in to the homeserver's Client-Server API as
 * this user, opens a room with the bot, sends what is typed and shows the room live (/sync).
 */
export interface DashboardChat {
  /** As the browser reaches it; its origin is added to the page's connect-src. */
  readonly homeserverUrl: string;
  readonly userId: string;
  /** Handed to the page (behind the admin token): only for a development user. */
  readonly password: string;
  readonly botUserId: string;
}

export interface AdminDashboardOptions {
  /** The admin token (config `admin.token`): `Authorization: Bearer` or the login form. Never logged. */
  readonly token: string;
  /** How long a browser login lasts. @default 43200000 (12 hours) */
  readonly sessionTtlMs?: number;
  /** Its events feed the throughput chart; its stats fill the lanes; retries and drops go through it. */
  readonly outbox: Outbox;
  /** The outbox's store: recent sends and dead letters (`list`). Read only. */
  readonly store: Pick<OutboxStore, "list">;
  /** The inbound journal: items by state, rejected and dead items with their reasons. Read only. */
  readonly inbound: Pick<InboundJournal, "list" | "totals">;
  /** The plugins and their status. No I/O. */
  readonly plugins: () => readonly PluginStatus[];
  /** Shown in the page header (bot user id, homeserver, start-up ping…). No I/O. @default nothing */
  readonly about?: () => Record<string, unknown>;
  /** Failed tokens per client address (shared with /metrics). @default its own, with the defaults */
  readonly throttle?: FailureThrottle;
  /** Logins, logouts and retries are logged here; tokens and session ids never are. */
  readonly logger: Logger;
  /** Recent sends listed. @default 25 */
  readonly recentLimit?: number;
  /** Dead letters listed. @default 100 */
  readonly deadLimit?: number;
  /** Rejected inbound items listed, and dead ones. @default 25 */
  readonly inboundLimit?: number;
  /** Lanes listed (the deepest first). @default 50 */
  readonly laneLimit?: number;
  /** A chat page as a Matrix user (the development setup's). @default none */
  readonly chat?: DashboardChat;
  /** The clock (tests). @default Date.now */
  readonly now?: () => number;
}
