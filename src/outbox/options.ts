import type { Logger } from "pino";
import type { MatrixRequest } from "../matrix/requests.ts";
import type { LaneOwnership } from "../inbound/LaneOwnership.ts";
import type { OutboxStore } from "../store/OutboxStore.ts";
import type { DeviceId, UserId } from "../ids.ts";
import { DEFAULT_RATE, type RateOptions } from "./TokenBucket.ts";
import { DEFAULT_RETRY, type RetryOptions } from "./classifyFailure.ts";
import type { ToDeviceChunkLimits } from "./chunkToDevice.ts";
import type { EventSealer } from "./types.ts";

/** Defaults of the options the configuration sets too: `config/schema.ts` reads them here. */
export const OUTBOX_DEFAULTS = {
  maxConcurrency: 32,
  rate: DEFAULT_RATE,
  retry: DEFAULT_RETRY,
  requestTimeoutMs: 30_000,
} as const;

/**
 * What the outbox needs from an HTTP client: send one journaled request, byte for byte. A request
 * naming a `deviceId` masquerades as that device of its `userId` (the bot's when none), which
 * must exist: `MatrixTransport` makes sure it does.
 */
export interface OutboxTransport {
  send(request: MatrixRequest, options?: { timeoutMs?: number }): Promise<unknown>;
}

export interface OutboxOptions {
  readonly store: OutboxStore;
  readonly transport: OutboxTransport;
  /** The registration's `id`; part of every txnId. */
  readonly appserviceId: string;
  /** The appservice's own user (`sender_localpart`), used when a request names no sender. */
  readonly botUserId: UserId;
  /**
   * Masquerade every request as this device of its sender (`device_id`), unless the item names
   * its own: Synapse then dedupes room sends by (user, device, txnId) in its database for 24 h,
   * across its restarts. The device must exist; the transport is expected to provision it.
   * @default none (Synapse's in-memory dedupe only)
   */
  readonly deviceId?: DeviceId;
  /** Lanes sending at the same time. @default 32 */
  readonly maxConcurrency?: number;
  /** Per-sender token bucket. @default { perSecond: 50, burst: 100 } */
  readonly rate?: Partial<RateOptions>;
  /** Per-sender overrides of `rate` (e.g. the bot user, which homeservers never limit). */
  readonly rateBySender?: Readonly<Record<string, Partial<RateOptions>>>;
  /** Backoff of transient failures. @default { baseMs: 250, capMs: 60000 } */
  readonly retry?: Partial<RetryOptions>;
  /** Timeout of one request. @default 30000 */
  readonly requestTimeoutMs?: number;
  /** Largest room event content, in bytes of JSON. @default 65536 */
  readonly maxEventBytes?: number;
  /** How a large to-device map is split. @default { maxDevices: 250, maxBytes: 65536 } */
  readonly toDevice?: Partial<ToDeviceChunkLimits>;
  /** Pending rows of one lane held in memory; the rest wait in the store. @default 256 */
  readonly laneWindow?: number;
  /**
   * Pending rows held in memory by all lanes together: with many lanes loaded, each holds its
   * share (at least 16), so memory is bounded by this, not by the number of rooms. @default 8192
   */
  readonly maxHeldRows?: number;
  /**
   * A lane whose head has waited this long (for a slot, a token or an answer), or failed, takes
   * no more rows into memory: an outage's backlog waits in the store. @default 100
   */
  readonly stalledLaneMs?: number;
  readonly logger?: Logger;
  /**
   * Several instances on one store: only the lanes this instance owns are sent here; rows
   * journaled in other lanes are sent by their owners. @default none: every lane is this outbox's
   */
  readonly ownership?: LaneOwnership;
  /** Encrypts room events for encrypted rooms before they are journaled. @default none */
  readonly sealer?: EventSealer;
  /**
   * Which senders other than the bot a request may name (masquerade as): the registration's user
   * namespaces. Any other sender is refused at enqueue with NotOurUserError, before a row is
   * journaled. @default every sender (the runtime passes the registration's namespaces)
   */
  readonly mayActAs?: (userId: UserId) => boolean;
  /** For tests: the jitter source. @default Math.random */
  readonly random?: () => number;
}
