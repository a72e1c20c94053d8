import type { Logger } from "pino";
import type { z } from "zod";
import type { Enqueued } from "../outbox/types.ts";
import type { ToDeviceMessages } from "../matrix/requests.ts";
import type { EphemeralEvent, MatrixEvent, ToDeviceEvent } from "./events.ts";
import type { ParsedCommand } from "./parseCommand.ts";
import type { PluginStore } from "../store/PluginStore.ts";

/** Who a request is sent as: the appservice's bot user unless `as` names a ghost of the namespace. */
export interface SendAs {
  readonly as?: string;
}

/**
 * What every handler can do. All sends go through the outbox: they are journaled before they
 * resolve, numbered within the event that caused them, and delivered exactly once, in order per
 * room, even if the handler runs again after a crash. (When a replayed handler sends different
 * content under the same number, the first journaled content wins.)
 */
export interface SendContext<C> {
  /** The plugin's validated config section. */
  readonly config: C;
  /** A pino child logger bound to the plugin (and the event, in event handlers). */
  readonly log: Logger;
  /** Aborted when the handler runs past its timeout or the framework stops. */
  readonly signal: AbortSignal;
  /** The plugin's own key-value space on the framework's database. */
  readonly store: PluginStore;
  /**
   * Send helpers whose sends are keyed by `key` instead of this handler's event, slot or
   * delivery: whichever handler sends under the same key, each request goes out once. For work
   * that outlives one event (a reminder set by one message, delivered by a later slot).
   */
  once(key: string): SendContext<C>;
  send(roomId: string, content: object, opts?: SendAs & { eventType?: string }): Promise<Enqueued>;
  /** A state event (`PUT /rooms/{roomId}/state/{eventType}/{stateKey}`), through the outbox. */
  setState(
    roomId: string,
    eventType: string,
    stateKey: string,
    content: object,
    opts?: SendAs,
  ): Promise<Enqueued>;
  redact(roomId: string, eventId: string, reason?: string, opts?: SendAs): Promise<Enqueued>;
  /** One to-device message to one device of a user (`"*"`: all their devices). */
  sendToDevice(
    userId: string,
    deviceId: string,
    type: string,
    content: object,
    opts?: SendAs,
  ): Promise<Enqueued>;
  /** To-device messages to many users/devices at once (split into requests as needed). */
  sendToDeviceMany(type: string, messages: ToDeviceMessages, opts?: SendAs): Promise<Enqueued>;
  /** Acts on the homeserver as a user of the appservice's namespace (a ghost). */
  intent(userId: string): Intent;
}

/**
 * A ghost user's account actions. They are idempotent (registering or joining twice is fine), so
 * they go straight to the homeserver rather than through the outbox; they do network I/O.
 */
export interface Intent {
  readonly userId: string;
  /** Registers the user if it does not exist yet. */
  ensureRegistered(): Promise<void>;
  /** Registers if needed and joins the room (it must be public, or the user invited). */
  join(roomIdOrAlias: string): Promise<void>;
  setDisplayName(name: string): Promise<void>;
  /** Sets the user's avatar to an `mxc://` URI. */
  setAvatarUrl(mxc: string): Promise<void>;
  /**
   * Creates a room as this user (`POST /createRoom` with the spec's body); resolves its room id.
   * Not idempotent: a crash before the caller saves the id leaves an unused room behind.
   */
  createRoom(body: object): Promise<string>;
  /** Invites `userId` to the room, as this user. */
  invite(roomId: string, userId: string): Promise<void>;
  /** Leaves the room. */
  leave(roomId: string): Promise<void>;
  /** The content of a state event of the room, read as this user; undefined when the room has none. */
  getState(
    roomId: string,
    eventType: string,
    stateKey?: string,
  ): Promise<Record<string, unknown> | undefined>;
}

export interface EventContext<C, E = Record<string, unknown>> extends SendContext<C> {
  readonly event: MatrixEvent<E>;
  readonly roomId: string;
  readonly sender: string;
  /** A notice (or the given content) in the event's room, as a reply to it. */
  reply(content: string | object, opts?: SendAs): Promise<Enqueued>;
  /** An `m.annotation` reaction to the event. */
  react(key: string, opts?: SendAs): Promise<Enqueued>;
  /** Replaces the content of one of our earlier messages in this room (`m.replace`). */
  edit(eventId: string, content: string | object, opts?: SendAs): Promise<Enqueued>;
}

export interface CommandContext<C> extends EventContext<C, { msgtype?: string; body?: string }> {
  readonly command: ParsedCommand;
}

export interface ToDeviceContext<C, E = Record<string, unknown>> extends SendContext<C> {
  readonly event: ToDeviceEvent<E>;
  readonly sender: string;
}

export interface EphemeralContext<C, E = Record<string, unknown>> extends SendContext<C> {
  readonly event: EphemeralEvent<E>;
}

/** A `bot.every` run: its sends are keyed by the slot, so a slot re-run after a crash sends nothing twice. */
export interface ScheduleContext<C> extends SendContext<C> {
  /** The slot this run is for (not the time it started: a missed slot runs late). */
  readonly slot: Date;
}

export interface EveryOptions {
  /** Unique within the plugin; the key its last slot is saved under. @default the schedule as text */
  readonly name?: string;
  /** Of a cron expression. @default "UTC" */
  readonly timezone?: string;
}

/** Which room events a handler wants; every given field must match. */
export interface EventFilter {
  readonly type?: string;
  readonly roomId?: string;
  readonly sender?: string | RegExp;
  /** `content.msgtype` of messages. */
  readonly msgtype?: string;
  /** `content.membership` of member events. */
  readonly membership?: string;
}

/** Options of `bot.on`, `bot.onToDevice` and `bot.onEphemeral`. */
export interface HandlerOptions {
  /**
   * The handler's identity within the plugin. Its sends are keyed by it (with the event), not by
   * its place among the plugin's handlers, so an upgrade that adds, removes or reorders handlers
   * replays unfinished events onto the same transaction ids. Unique within the plugin; required
   * when two handlers of the plugin could match the same event (the plugin fails to load
   * otherwise). Renaming it changes the key: do that with no events in flight.
   * @default derived from the filter (`bot.on`) or the type (`onToDevice`, `onEphemeral`)
   */
  readonly id?: string;
}

export interface CommandOptions {
  /** One line for the automatic `help`. */
  readonly help?: string;
  /**
   * Usage after the command name, e.g. `<text>`: shown by `help`, and answered (`usage: !echo
   * <text>`) instead of running the handler when the command comes with fewer arguments than it
   * requires. `<x>` is required, `[x]` optional, a bare word a literal; `|` separates alternatives.
   */
  readonly usage?: string;
  /**
   * Only users with at least this power level in the room may run it (m.room.power_levels; in
   * room version 12 the room's creators outrank everyone). Others get a reply saying so.
   * @default anyone
   */
  readonly minPowerLevel?: number;
}

/** An HTTP method a webhook can be registered for. */
export type WebhookMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

/**
 * How a webhook proves the request comes from who holds the secret.
 * - `bearer`: `Authorization: Bearer <secret>`.
 * - `hmac-sha256`: GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
 *   The signature does not cover the delivery id, so the same signed body again within the route's
 *   `replayWindowMs` (a day by default) is answered as the delivery that first brought it
 *   (202, its id) and the handler does not run again, whatever delivery id it carries.
 */
export type WebhookScheme = "bearer" | "hmac-sha256";

/** What a webhook handler sees of the HTTP request. */
export interface WebhookRequest {
  readonly method: WebhookMethod;
  /** The route's path as registered (`/alert`), without the `/plugins/<name>` prefix. */
  readonly path: string;
  /** Lower-cased header names; repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  /**
   * The parsed JSON when the content type is JSON (`application/json`, `…+json`), otherwise the
   * body as UTF-8 text; undefined when the body is empty.
   */
  readonly body: unknown;
  /** The bytes as received (what an HMAC is computed over). */
  readonly rawBody: Buffer;
}

export interface WebhookOptions {
  /**
   * The shared secret. @default the plugin config's `secret` (a string) — a route with neither is
   * refused at registration: a webhook must be protected.
   */
  readonly secret?: string;
  /** @default the plugin config's `scheme`, else "bearer" */
  readonly scheme?: WebhookScheme;
  /**
   * The sender's delivery id, for senders that send none in a header (Alertmanager): two requests
   * with the same id are one delivery, their sends collapse onto the same txnIds. Called after
   * the request is authenticated and parsed; return undefined to fall back to the headers, then to
   * an id given to the request on arrival. @default the headers only
   */
  readonly deliveryId?: (request: WebhookRequest) => string | undefined;
  /**
   * `hmac-sha256` only: how long, in ms, the route remembers a signed body it ran. The same body
   * again within it is a replay (the delivery id is not signed): answered 202 with the first
   * delivery's id, its handler not run again. After it, the same body runs as a new delivery.
   * Kept in the plugin's store, so it holds across restarts. A positive number, else the plugin
   * fails to load. @default the plugin config's `replayWindowMs`, else a day (86400000)
   */
  readonly replayWindowMs?: number;
}

/**
 * A webhook handler's context: the send helpers, bound to the cause
 * `<plugin>/webhook:<METHOD> <path>:<deliveryId>`, plus the request. The request is answered
 * 202 `{delivery_id}` once the handler's promise resolves (each awaited send is then journaled),
 * 500 when it throws or times out: the sender retries, and with the same delivery id the retry's
 * sends collapse onto the first attempt's.
 */
export interface WebhookContext<C> extends SendContext<C> {
  readonly request: WebhookRequest;
  /** The `X-GitHub-Delivery` / `Idempotency-Key` header, `options.deliveryId`, or an id given on arrival. */
  readonly deliveryId: string;
}

/** What `setup` registers. Called once per plugin, before the framework starts dispatching. */
export interface Bot<C> {
  readonly config: C;
  readonly log: Logger;
  /** The appservice's own user id (the bot). */
  readonly userId: string;
  /** The plugin's own key-value space (the same as `ctx.store`). */
  readonly store: PluginStore;
  /**
   * Runs `handler` for room events matching `filter` (a type, or fields that must all match).
   * Two handlers of the plugin that could match the same event (no field given in both with
   * different strings; a RegExp sender may match anyone) each need an `id`: throws (the plugin
   * fails to load) without, or when an id is used twice. Its sends are keyed by
   * `<plugin>/id:<id>:<event id>`, or without an id by the filter: `<plugin>/on{<fields>}:<event id>`.
   */
  on<E = Record<string, unknown>>(
    filter: string | EventFilter,
    handler: (ctx: EventContext<C, E>) => unknown,
    options?: HandlerOptions,
  ): void;
  /**
   * Runs `handler` for `!name …` (case-insensitive). Its sends are keyed by
   * `<plugin>/command:<name>:<event id>`. Throws (the plugin fails to load) on a name used twice.
   */
  command(name: string, handler: (ctx: CommandContext<C>) => unknown, options?: CommandOptions): void;
  /**
   * Runs `handler` for to-device messages of `type`. Keyed by `<plugin>/todevice:<type>:item:<seq>`,
   * or `<plugin>/id:<id>:item:<seq>`; two handlers of one type each need an `id`.
   */
  onToDevice<E = Record<string, unknown>>(
    type: string,
    handler: (ctx: ToDeviceContext<C, E>) => unknown,
    options?: HandlerOptions,
  ): void;
  /**
   * Runs `handler` for ephemeral events of `type`. Keyed by `<plugin>/ephemeral:<type>:item:<seq>`,
   * or `<plugin>/id:<id>:item:<seq>`; two handlers of one type each need an `id`.
   */
  onEphemeral<E = Record<string, unknown>>(
    type: string,
    handler: (ctx: EphemeralContext<C, E>) => unknown,
    options?: HandlerOptions,
  ): void;
  /**
   * Serves `METHOD /plugins/<plugin>/<path>` on the appservice endpoint. `path` is literal
   * (`/alert`, `/github/push`: letters, digits, `-._~`). Throws (the plugin fails to load) when
   * the route has no secret, or is registered twice.
   */
  webhook(
    method: WebhookMethod,
    path: string,
    handler: (ctx: WebhookContext<C>, request: WebhookRequest) => unknown,
    options?: WebhookOptions,
  ): void;
  /** Answers the homeserver's user queries for matching ids (the user is registered on demand). */
  claimUsers(pattern: RegExp): void;
  /** Answers the homeserver's alias queries for matching aliases. */
  claimAliases(pattern: RegExp, create?: (alias: string) => Promise<boolean>): void;
  /**
   * Runs `handler` at every slot of `schedule`: an interval ("30s", "10m", "1h", or ms; slots
   * are its multiples since the epoch) or a cron expression ("0 9 * * 1-5"). The last slot run
   * is saved: after downtime, the missed slots run once (the latest), not once each. Throws (the
   * plugin fails to load) on a bad schedule or a name used twice.
   */
  every(
    schedule: string | number,
    handler: (ctx: ScheduleContext<C>) => unknown,
    options?: EveryOptions,
  ): void;
  onStart(hook: () => unknown): void;
  onStop(hook: () => unknown): void;
  /**
   * Send helpers outside any handler, keyed by `key` like `ctx.once(key)` (the same cause
   * `<plugin>/once:<key>`): whatever sends under a key, each request goes out once. For work
   * that starts on another network (a bridge's remote events). Usable once the plugin started.
   */
  once(key: string): SendContext<C>;
  /** Account actions of the bot or a ghost of the namespace (as `ctx.intent`). */
  intent(userId: string): Intent;
}

export interface PluginDefinition<S extends z.ZodType = z.ZodType> {
  /** Unique, `[a-z][a-z0-9-]*`: namespaces the plugin's logs, causes, routes and storage. */
  readonly name: string;
  /** Schema of the plugin's config section; its output type is `bot.config`. */
  readonly config?: S;
  setup(bot: Bot<z.output<S>>): void | Promise<void>;
}

const NAME = /^[a-z][a-z0-9-]*$/;

/** Declares a plugin. Checks the shape at once so a typo fails at import, not at start. */
export function definePlugin<S extends z.ZodType>(definition: PluginDefinition<S>): PluginDefinition<S> {
  if (!NAME.test(definition.name ?? "")) {
    throw new TypeError(`Expected a plugin name matching ${NAME}, got ${JSON.stringify(definition.name)}`);
  }
  if (typeof definition.setup !== "function") {
    throw new TypeError(`Expected plugin "${definition.name}" to have a setup(bot) function`);
  }
  return Object.freeze({ ...definition });
}
