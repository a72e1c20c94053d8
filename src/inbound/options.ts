import type { Express } from "express";
import type { Logger } from "pino";
import type { InboundJournal, JournalOutcome } from "./InboundJournal.ts";

/** Answers the homeserver's user and alias queries: does this id belong to the appservice? */
export interface AppserviceQueries {
  /** `GET /_matrix/app/v1/users/{userId}`: true → 200 (the user exists or was just created), false → 404. */
  userExists(userId: string): Promise<boolean>;
  /** `GET /_matrix/app/v1/rooms/{alias}`: true → 200 (the room exists or was just created), false → 404. */
  aliasExists(alias: string): Promise<boolean>;
}

/** What `GET /ready` answers: 200 when `ready`, 503 otherwise, with `checks` as the body. */
export interface Readiness {
  readonly ready: boolean;
  readonly checks: Record<string, unknown>;
}

export interface AppserviceOptions {
  /** The registration's `hs_token`: the homeserver sends it as `Authorization: Bearer …`. */
  readonly hsToken: string;
  /** Where transactions are committed before they are answered. */
  readonly journal: InboundJournal;
  /**
   * Called after a transaction added items to the journal (not for a retry that added none):
   * hands them to the dispatcher. Synchronous and cheap; an exception is logged, the transaction
   * is still answered 200.
   * @default does nothing
   */
  readonly onJournaled?: (journaled: Journaled) => void;
  /**
   * Called when a transaction could not be journaled (it is answered 500 and the homeserver
   * will send it again, on its own backoff). Synchronous; an exception is logged.
   * @default does nothing
   */
  readonly onJournalFailed?: (error: unknown) => void;
  /** @default nothing exists: every query is answered 404 */
  readonly queries?: AppserviceQueries;
  /**
   * Largest transaction body, in bytes. Synapse sends up to 100 events of up to 64 KiB each,
   * plus ephemeral and to-device parts. @default 33554432 (32 MiB)
   */
  readonly maxBodyBytes?: number;
  /**
   * Accept the hs_token as `?access_token=` when no `Authorization` header is sent. Synapse
   * removed that form; only turn it on for an old homeserver. @default false
   */
  readonly allowQueryToken?: boolean;
  /** Build it with redaction (`createLogger`); tokens are never logged here anyway. @default createLogger() */
  readonly logger?: Logger;
  /** @default always ready, no checks */
  readonly readiness?: () => Readiness;
  /**
   * False while shutting down: transactions are then answered 503 (`M_UNKNOWN`) without being
   * read, and the homeserver sends them again later. @default always true
   */
  readonly accepting?: () => boolean;
  /** Called on every authenticated `POST /_matrix/app/v1/ping`. @default does nothing */
  readonly onPing?: (transactionId: string | undefined) => void;
  /**
   * Mounts more routes (plugin webhooks, metrics) before the JSON 404 fallback. Their errors are
   * answered as JSON too.
   * @default none
   */
  readonly routes?: (app: Express) => void;
  /**
   * Reverse proxies whose `X-Forwarded-For`, `-Host` and `-Proto` are believed (express's `trust
   * proxy`: addresses, CIDR ranges, or `loopback`, `linklocal`, `uniquelocal`). From any other
   * peer those headers are ignored: the client address is the socket's. @default none
   */
  readonly trustedProxies?: readonly string[];
}

/** Where `listen` binds. */
export interface ListenOptions {
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** 0 picks a free port (see the returned `port`). */
  readonly port: number;
}

/** What a transaction added to the journal, and its new items counted by kind. */
export interface Journaled extends JournalOutcome {
  readonly counts: JournaledCounts;
}

/** New items of a transaction, by kind (`e2ee`: device lists and key counts). */
export interface JournaledCounts {
  readonly events: number;
  readonly ephemeral: number;
  readonly toDevice: number;
  readonly e2ee: number;
}
