import type { Express } from "express";
import type { Logger } from "pino";
import type { Outbox } from "../outbox/Outbox.ts";
import type { InboundItem } from "../inbound/InboundJournal.ts";
import { isJournalUnavailable, PluginError } from "../errors.ts";
import type {
  Bot,
  CommandOptions,
  EventFilter,
  HandlerOptions,
  Intent,
  PluginDefinition,
  SendContext,
  WebhookMethod,
  WebhookOptions,
  WebhookRequest,
  WebhookScheme,
} from "./definePlugin.ts";
import type { EphemeralEvent, MatrixEvent, ToDeviceEvent } from "./events.ts";
import { createEventContext, createSendContext } from "./createContext.ts";
import { parseCommand } from "./parseCommand.ts";
import { lazyChildLogger } from "../logging/lazyChildLogger.ts";
import { createWebhookRouter, type WebhookRoute } from "./webhookRouter.ts";
import { Scheduler, type SchedulerClock } from "./Scheduler.ts";
import { parseSchedule } from "./schedule.ts";
import type { PluginData } from "../store/PluginStore.ts";
import { SqlitePluginData } from "../store/sqlite/SqlitePluginData.ts";
import type { PowerLevels } from "./PowerLevels.ts";

type AnyHandler = (ctx: never) => unknown;

/**
 * A handler as `setup` registered it. `identity` names it in its causes (`<plugin>/<identity>:…`):
 * `id:<id>` when given one, else `command:<name>`, `on{<filter>}`, `todevice:<type>` or
 * `ephemeral:<type>`. Never its place in the list: an upgrade that adds, removes or reorders
 * handlers must replay an unfinished event onto the same txnIds (DESIGN.md, invariant 9).
 */
type Registration = { readonly identity: string; readonly handler: AnyHandler } & (
  | { readonly kind: "event"; readonly filter: EventFilter; readonly id: string | undefined }
  | { readonly kind: "command"; readonly name: string; readonly options: CommandOptions }
  | { readonly kind: "toDevice" | "ephemeral"; readonly type: string; readonly id: string | undefined }
);

const FILTER_FIELDS = ["type", "roomId", "sender", "msgtype", "membership"] as const;

type WebhookHandler = (ctx: never, request: WebhookRequest) => unknown;

interface Webhook extends WebhookRoute {
  readonly handler: WebhookHandler;
}

const WEBHOOK_METHODS: readonly WebhookMethod[] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const WEBHOOK_PATH = /^(?:\/[A-Za-z0-9._~-]+)+$/;
const SHORT_SECRET = 16;

interface LoadedPlugin {
  readonly name: string;
  readonly config: unknown;
  readonly log: Logger;
  readonly registrations: Registration[];
  readonly webhooks: Webhook[];
  readonly userClaims: RegExp[];
  readonly aliasClaims: Array<{ pattern: RegExp; create: ((alias: string) => Promise<boolean>) | undefined }>;
  readonly startHooks: Array<() => unknown>;
  readonly stopHooks: Array<() => unknown>;
  readonly schedules: Set<string>;
  status: "running" | "failed";
  error?: string;
}

export interface PluginHostOptions {
  readonly outbox: Outbox;
  readonly logger: Logger;
  /** The appservice's own user: joins rooms it is invited to, answers `help`. */
  readonly botUserId: string;
  /** Users of the appservice (bot and exclusive namespace): their events are not shown to plugins. */
  readonly isOwnUser: (userId: string) => boolean;
  /** Account actions of a user of the appservice (the bot or a ghost). */
  readonly intent: (userId: string) => Intent;
  /** @default "!" */
  readonly commandPrefix?: string;
  /** A handler running longer fails (and its `ctx.signal` aborts). @default 30000 */
  readonly handlerTimeoutMs?: number;
  /** Tries of one handler on one event before it is given up (dead-lettered). @default 5 */
  readonly maxAttempts?: number;
  /** First pause between two tries. @default 200 */
  readonly retryBaseMs?: number;
  /** Reads users' power levels, for commands with `minPowerLevel`. @default none: such commands are refused */
  readonly powerLevels?: PowerLevels;
  /** Plugins' key-value spaces and schedule slots. @default an in-memory database (nothing survives a restart) */
  readonly data?: PluginData;
  /** The clock of `bot.every` (tests). @default the system clock */
  readonly clock?: SchedulerClock;
  /** Told about every try of a handler (metrics). Synchronous. @default does nothing */
  readonly onHandlerRun?: (run: HandlerRun) => void;
}

/** Defaults of the options the configuration sets too: `config/schema.ts` reads them here. */
export const HANDLER_DEFAULTS = { handlerTimeoutMs: 30_000, maxAttempts: 5 } as const;

/** One try of one handler on one item. */
export interface HandlerRun {
  /** The plugin's name; "courier" for the framework's own jobs (auto-join, help). */
  readonly plugin: string;
  readonly handler: string;
  readonly durationMs: number;
  readonly ok: boolean;
}

/** A unit of work for one event: a plugin's handler, or the framework's own (auto-join, help). */
interface Job {
  readonly label: string;
  readonly cause: string;
  readonly plugin: LoadedPlugin | undefined;
  run(ctx: SendContext<unknown>): unknown;
  readonly eventId: string | undefined;
}

/**
 * Holds the loaded plugins and runs their handlers for one journaled item. Each plugin is its own
 * scope (config, logger, causes); one that fails to load is disabled and the others run; a
 * handler that throws or hangs is retried a few times and then given up, and never stops another.
 */
export class PluginHost {
  readonly #options: Required<Omit<PluginHostOptions, "clock" | "powerLevels">>;
  readonly #powerLevels: PowerLevels | undefined;
  readonly #plugins: LoadedPlugin[] = [];
  readonly #stopping = new AbortController();
  readonly #scheduler: Scheduler;
  readonly #everyHandlers = new Map<string, { plugin: LoadedPlugin; handler: AnyHandler }>();

  constructor(options: PluginHostOptions) {
    this.#options = {
      commandPrefix: "!",
      ...HANDLER_DEFAULTS,
      retryBaseMs: 200,
      onHandlerRun: () => {},
      ...options,
      data: options.data ?? new SqlitePluginData({ path: ":memory:" }),
    };
    this.#powerLevels = options.powerLevels;
    this.#scheduler = new Scheduler({
      data: this.#options.data,
      log: options.logger.child({ component: "scheduler" }),
      ...(options.clock ? { clock: options.clock } : {}),
      run: async (job, slot) => {
        const entry = this.#everyHandlers.get(`${job.plugin}\u0000${job.name}`);
        if (entry?.plugin.status !== "running") return;
        await this.#runWithRetries(
          {
            label: `${job.plugin} every ${job.name}`,
            // The slot, not the time of the run: a slot re-run after a crash sends onto the same txnIds.
            cause: `${job.plugin}/every:${job.name}:${slot}`,
            plugin: entry.plugin,
            eventId: undefined,
            run: (ctx) => (entry.handler as (c: unknown) => unknown)({ ...ctx, slot: new Date(slot) }),
          },
          { schedule: job.name, slot: new Date(slot).toISOString() },
        );
      },
    });
  }

  /** Validates the plugin's config and runs its setup. Resolves false (plugin disabled) on failure. */
  async load(definition: PluginDefinition, rawConfig: unknown): Promise<boolean> {
    if (this.#plugins.some((p) => p.name === definition.name)) {
      throw new PluginError(definition.name, "a plugin with this name is already loaded");
    }
    const log = this.#options.logger.child({ plugin: definition.name });
    const plugin: LoadedPlugin = {
      name: definition.name,
      config: undefined,
      log,
      registrations: [],
      webhooks: [],
      userClaims: [],
      aliasClaims: [],
      startHooks: [],
      stopHooks: [],
      schedules: new Set(),
      status: "running",
    };
    this.#plugins.push(plugin);
    try {
      const parsed = definition.config
        ? definition.config.safeParse(rawConfig ?? {})
        : { success: true as const, data: rawConfig ?? {} };
      if (!parsed.success) {
        const problems = parsed.error.issues.map(
          (i) => `plugins.${definition.name}.config.${i.path.join(".")}: ${i.message}`,
        );
        throw new PluginError(definition.name, `invalid config:\n  ${problems.join("\n  ")}`);
      }
      (plugin as { config: unknown }).config = parsed.data;
      await definition.setup(this.#botFor(plugin) as Bot<never>);
      log.info({ handlers: plugin.registrations.length }, "plugin loaded");
      return true;
    } catch (error) {
      plugin.status = "failed";
      plugin.error = error instanceof Error ? error.message : String(error);
      log.error({ err: error }, "plugin failed to load; it is disabled, the others run");
      return false;
    }
  }

  /** Name, status and error of every plugin. */
  status(): Array<{ name: string; status: string; error?: string }> {
    return this.#plugins.map((p) => ({
      name: p.name,
      status: p.status,
      ...(p.error ? { error: p.error } : {}),
    }));
  }

  /** Runs the plugins' start hooks, then their schedules (a slot missed while down runs now). */
  async start(): Promise<void> {
    for (const plugin of this.#running()) await this.#hooks(plugin, plugin.startHooks, "start");
    await this.#scheduler.start();
  }

  async stop(): Promise<void> {
    this.#scheduler.stop();
    this.#stopping.abort();
    for (const plugin of this.#running()) await this.#hooks(plugin, plugin.stopHooks, "stop");
  }

  async userExists(userId: string): Promise<boolean> {
    return this.#running().some((p) => p.userClaims.some((re) => re.test(userId)));
  }

  async aliasExists(alias: string): Promise<boolean> {
    for (const plugin of this.#running()) {
      for (const claim of plugin.aliasClaims) {
        if (claim.pattern.test(alias)) return claim.create ? claim.create(alias) : true;
      }
    }
    return false;
  }

  /**
   * Runs every handler that wants this item. Resolves with the failures of handlers that were
   * given up after `maxAttempts` (empty when all succeeded). Rejects only with a
   * JournalUnavailableError (a send could not be journaled), after every handler has finished.
   */
  async dispatch(item: InboundItem): Promise<string[]> {
    const jobs = this.#jobsFor(item);
    const results = await Promise.allSettled(
      jobs.map((job) => this.#runWithRetries(job, { seq: item.seq, lane: item.lane })),
    );
    // The store could not journal a send: not the handler's fault, and the event must not be
    // settled. Rejecting leaves it pending; it runs again (all its handlers) once the store heals.
    const interrupted = results.find((r) => r.status === "rejected");
    if (interrupted) throw interrupted.reason;
    return results
      .map((r) => (r.status === "fulfilled" ? r.value : undefined))
      .filter((f) => f !== undefined);
  }

  /**
   * Mounts every plugin's webhooks under `/plugins/<name>/` (pass it as the appservice's `routes`
   * option, after the plugins are loaded). A plugin that fails later (a start hook) or a stopping
   * host answers 503. No I/O.
   */
  mountWebhooks(app: Express): void {
    for (const plugin of this.#plugins) {
      if (plugin.webhooks.length === 0) continue;
      app.use(
        `/plugins/${plugin.name}`,
        createWebhookRouter({
          routes: plugin.webhooks,
          log: plugin.log,
          accepting: () => plugin.status === "running" && !this.#stopping.signal.aborted,
          run: (route, request, deliveryId) => this.#runWebhook(plugin, route, request, deliveryId),
        }),
      );
    }
  }

  #running(): LoadedPlugin[] {
    return this.#plugins.filter((p) => p.status === "running");
  }

  #botFor(plugin: LoadedPlugin): Bot<unknown> {
    const add = (registration: Registration) => {
      checkRegistration(plugin.name, plugin.registrations, registration);
      plugin.registrations.push(registration);
    };
    const idOf = (options: HandlerOptions | undefined): string | undefined => {
      const id = options?.id;
      if (id !== undefined && (typeof id !== "string" || id.length === 0)) {
        throw new PluginError(
          plugin.name,
          `a handler id must be a non-empty string, got ${JSON.stringify(id)}`,
        );
      }
      return id;
    };
    const onItems = (
      kind: "toDevice" | "ephemeral",
      type: string,
      handler: AnyHandler,
      options?: HandlerOptions,
    ) => {
      const id = idOf(options);
      add({
        kind,
        type,
        id,
        handler,
        identity: id === undefined ? `${kind.toLowerCase()}:${type}` : `id:${id}`,
      });
    };
    return {
      config: plugin.config,
      log: plugin.log,
      userId: this.#options.botUserId,
      on: (filter, handler, options) => {
        const id = idOf(options);
        const normalized = typeof filter === "string" ? { type: filter } : filter;
        const identity = id === undefined ? `on{${canonicalFilter(normalized)}}` : `id:${id}`;
        add({ kind: "event", filter: normalized, id, handler: handler as AnyHandler, identity });
      },
      command: (name, handler, options = {}) => {
        const lower = name.toLowerCase();
        add({ kind: "command", name: lower, options, handler, identity: `command:${lower}` });
      },
      onToDevice: (type, handler, options) => onItems("toDevice", type, handler as AnyHandler, options),
      onEphemeral: (type, handler, options) => onItems("ephemeral", type, handler as AnyHandler, options),
      webhook: (method, path, handler, options) =>
        plugin.webhooks.push(this.#checkWebhook(plugin, method, path, handler, options)),
      claimUsers: (pattern) => plugin.userClaims.push(pattern),
      claimAliases: (pattern, create) => plugin.aliasClaims.push({ pattern, create }),
      store: this.#options.data.forPlugin(plugin.name),
      every: (spec, handler, options = {}) => {
        const name = options.name ?? String(spec);
        if (plugin.schedules.has(name)) {
          throw new PluginError(plugin.name, `schedule "${name}" is registered twice; give one a name`);
        }
        let schedule;
        try {
          schedule = parseSchedule(spec, options.timezone);
        } catch (error) {
          throw new PluginError(plugin.name, (error as Error).message);
        }
        plugin.schedules.add(name);
        this.#everyHandlers.set(`${plugin.name}\u0000${name}`, { plugin, handler: handler as AnyHandler });
        this.#scheduler.add({ plugin: plugin.name, name, schedule });
      },
      onStart: (hook) => plugin.startHooks.push(hook),
      onStop: (hook) => plugin.stopHooks.push(hook),
    };
  }

  #checkWebhook(
    plugin: LoadedPlugin,
    method: WebhookMethod,
    path: string,
    handler: WebhookHandler,
    options: WebhookOptions = {},
  ): Webhook {
    const route = `${method} /plugins/${plugin.name}${path}`;
    if (!WEBHOOK_METHODS.includes(method)) {
      throw new PluginError(
        plugin.name,
        `webhook method must be one of ${WEBHOOK_METHODS.join(", ")}, got ${JSON.stringify(method)}`,
      );
    }
    if (typeof path !== "string" || !WEBHOOK_PATH.test(path)) {
      throw new PluginError(
        plugin.name,
        `webhook path must be literal, like "/alert" (letters, digits, "-._~" between slashes), got ${JSON.stringify(path)}`,
      );
    }
    if (typeof handler !== "function") throw new PluginError(plugin.name, `webhook ${route} has no handler`);
    if (plugin.webhooks.some((w) => w.method === method && w.path === path)) {
      throw new PluginError(plugin.name, `webhook ${route} is registered twice`);
    }
    const config = (typeof plugin.config === "object" && plugin.config !== null ? plugin.config : {}) as {
      secret?: unknown;
      scheme?: unknown;
    };
    const secret = options.secret ?? (typeof config.secret === "string" ? config.secret : undefined);
    if (secret === undefined || secret.length === 0) {
      throw new PluginError(
        plugin.name,
        `webhook ${route} has no secret: give it one (options.secret or the plugin config's "secret"); a webhook must be protected`,
      );
    }
    const scheme =
      options.scheme ?? (config.scheme === undefined ? "bearer" : (config.scheme as WebhookScheme));
    if (scheme !== "bearer" && scheme !== "hmac-sha256") {
      throw new PluginError(
        plugin.name,
        `webhook ${route}: scheme must be "bearer" or "hmac-sha256", got ${JSON.stringify(scheme)}`,
      );
    }
    if (secret.length < SHORT_SECRET) {
      plugin.log.warn({ route }, `the secret of webhook ${route} is shorter than ${SHORT_SECRET} characters`);
    }
    return { method, path, secret, scheme, deliveryId: options.deliveryId, handler };
  }

  /** Runs one webhook delivery once, under its cause; rejects when the handler fails or times out. */
  async #runWebhook(
    plugin: LoadedPlugin,
    route: Webhook,
    request: WebhookRequest,
    deliveryId: string,
  ): Promise<void> {
    const label = `${route.method} ${route.path}`;
    const log = plugin.log.child({ webhook: label, deliveryId });
    await this.#runOnce(`${plugin.name}/webhook:${label}:${deliveryId}`, plugin, log, (ctx) =>
      (route.handler as unknown as (c: unknown, r: WebhookRequest) => unknown)(
        { ...ctx, request, deliveryId },
        request,
      ),
    );
    log.debug("webhook handled");
  }

  /**
   * Runs `run` once with a fresh send context on `cause`, under the handler timeout and the
   * host's stop signal. Resolves when it resolves; rejects with its error or a timeout.
   */
  async #runOnce(
    cause: string,
    plugin: LoadedPlugin | undefined,
    log: Logger,
    run: (ctx: SendContext<unknown>) => unknown,
  ): Promise<void> {
    const { handlerTimeoutMs, outbox } = this.#options;
    const controller = new AbortController();
    const onStop = () => controller.abort();
    this.#stopping.signal.addEventListener("abort", onStop);
    const owner = plugin?.name ?? "courier";
    const ctx = createSendContext({
      scope: outbox.cause(cause),
      keyed: (key) => outbox.cause(`${owner}/once:${key}`),
      config: plugin?.config,
      log,
      signal: controller.signal,
      intent: this.#options.intent,
      store: this.#options.data.forPlugin(owner),
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.resolve().then(() => run(ctx)),
        new Promise((_, reject) => {
          timer = setTimeout(() => {
            controller.abort();
            reject(new Error(`timed out after ${handlerTimeoutMs} ms`));
          }, handlerTimeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.#stopping.signal.removeEventListener("abort", onStop);
    }
  }

  #jobsFor(item: InboundItem): Job[] {
    const payload = (item.payload ?? JSON.parse(item.json)) as Record<string, unknown>;
    if (item.kind === "event") return this.#eventJobs(payload as unknown as MatrixEvent);
    const jobs: Job[] = [];
    const type = payload.type as string;
    for (const plugin of this.#running()) {
      for (const r of plugin.registrations) {
        if (r.kind === "event" || r.kind === "command" || r.kind !== item.kind || r.type !== type) continue;
        const extra =
          item.kind === "toDevice"
            ? { event: payload as unknown as ToDeviceEvent, sender: payload.sender }
            : { event: payload as unknown as EphemeralEvent };
        jobs.push({
          label: `${plugin.name} ${r.kind} ${type}`,
          // The item's seq is persistent: a replay after a crash runs under the same cause.
          cause: `${plugin.name}/${r.identity}:item:${item.seq}`,
          plugin,
          eventId: undefined,
          run: (ctx) => (r.handler as (c: unknown) => unknown)({ ...ctx, ...extra }),
        });
      }
    }
    return jobs;
  }

  #eventJobs(event: MatrixEvent): Job[] {
    const jobs: Job[] = [];
    const { isOwnUser } = this.#options;
    if (
      event.type === "m.room.member" &&
      event.content.membership === "invite" &&
      event.state_key &&
      isOwnUser(event.state_key)
    ) {
      const invitee = event.state_key;
      jobs.push({
        label: "auto-join",
        cause: `courier/join:${event.event_id}`,
        plugin: undefined,
        eventId: event.event_id,
        run: () => this.#options.intent(invitee).join(event.room_id),
      });
    }
    // A change of power levels counts from the next command on.
    if (event.type === "m.room.power_levels") this.#powerLevels?.forget(event.room_id);
    // Echo suppression: what our own users said is not news to our plugins.
    if (isOwnUser(event.sender)) return jobs;

    const body =
      typeof event.content.body === "string" && event.type === "m.room.message"
        ? event.content.body
        : undefined;
    const command = body === undefined ? undefined : parseCommand(body, this.#options.commandPrefix);
    let commandHandled = false;
    for (const plugin of this.#running()) {
      for (const r of plugin.registrations) {
        const cause = `${plugin.name}/${r.identity}:${event.event_id}`;
        if (r.kind === "event" && matches(r.filter, event)) {
          jobs.push({
            label: `${plugin.name} on ${event.type}`,
            cause,
            plugin,
            eventId: event.event_id,
            run: (ctx) => this.#call(r.handler, ctx, event),
          });
        } else if (r.kind === "command" && command?.name === r.name) {
          commandHandled = true;
          jobs.push({
            label: `${plugin.name} command ${r.name}`,
            cause,
            plugin,
            eventId: event.event_id,
            run: async (ctx) => {
              const refusal = await this.#refusal(r.name, r.options.minPowerLevel, event);
              if (refusal) return createEventContext(ctx, event).reply(refusal);
              return this.#call(r.handler, ctx, event, { command });
            },
          });
        }
      }
    }
    if (command?.name === "help" && !commandHandled) {
      jobs.push({
        label: "help",
        cause: `courier/help:${event.event_id}`,
        plugin: undefined,
        eventId: event.event_id,
        run: (ctx) => createEventContext(ctx, event).reply(this.#helpText()),
      });
    }
    return jobs;
  }

  /** Why the sender may not run the command here; undefined when they may. */
  async #refusal(
    name: string,
    minPowerLevel: number | undefined,
    event: MatrixEvent,
  ): Promise<string | undefined> {
    if (minPowerLevel === undefined) return undefined;
    const command = `${this.#options.commandPrefix}${name}`;
    if (!this.#powerLevels)
      return `${command} needs power level ${minPowerLevel}, and power levels cannot be checked here.`;
    const level = await this.#powerLevels.levelOf(event.room_id, event.sender);
    return level >= minPowerLevel
      ? undefined
      : `${command} needs power level ${minPowerLevel} in this room; you have ${level}.`;
  }

  #call(handler: AnyHandler, ctx: SendContext<unknown>, event: MatrixEvent, extra: object = {}): unknown {
    return (handler as (c: unknown) => unknown)({ ...createEventContext(ctx, event), ...extra });
  }

  #helpText(): string {
    const prefix = this.#options.commandPrefix;
    const lines = [`Commands (prefix ${prefix}):`, `${prefix}help: this list`];
    for (const plugin of this.#running()) {
      for (const r of plugin.registrations) {
        if (r.kind !== "command") continue;
        const usage = r.options.usage ? ` ${r.options.usage}` : "";
        const power =
          r.options.minPowerLevel === undefined ? "" : ` (power level ${r.options.minPowerLevel})`;
        lines.push(`${prefix}${r.name}${usage}: ${r.options.help ?? `(${plugin.name})`}${power}`);
      }
    }
    return lines.join("\n");
  }

  async #runWithRetries(job: Job, bindings: Record<string, unknown>): Promise<string | undefined> {
    const { maxAttempts, retryBaseMs, logger } = this.#options;
    const log = lazyChildLogger(job.plugin?.log ?? logger, { eventId: job.eventId, ...bindings });
    // One cause scope per job: a retry numbers its sends from zero again, onto the same txnIds.
    let lastError = "";
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const started = performance.now();
      const report = (ok: boolean) =>
        this.#options.onHandlerRun({
          plugin: job.plugin?.name ?? "courier",
          handler: job.label,
          durationMs: performance.now() - started,
          ok,
        });
      try {
        await this.#runOnce(job.cause, job.plugin, log, (ctx) => job.run(ctx));
        report(true);
        return undefined;
      } catch (error) {
        report(false);
        if (isJournalUnavailable(error)) throw error;
        lastError = error instanceof Error ? error.message : String(error);
        log.warn({ err: error, attempt, handler: job.label }, "handler failed");
      }
      if (this.#stopping.signal.aborted) break;
      if (attempt < maxAttempts) await new Promise((r) => setTimeout(r, retryBaseMs * 2 ** (attempt - 1)));
    }
    log.error(
      { handler: job.label, error: lastError },
      "handler given up; the event is dead-lettered for it",
    );
    return `${job.label}: ${lastError}`;
  }

  async #hooks(plugin: LoadedPlugin, hooks: Array<() => unknown>, what: string): Promise<void> {
    for (const hook of hooks) {
      try {
        await hook();
      } catch (error) {
        plugin.log.error({ err: error }, `${what} hook failed`);
        if (what === "start") {
          plugin.status = "failed";
          plugin.error = error instanceof Error ? error.message : String(error);
        }
      }
    }
  }
}

function matches(filter: EventFilter, event: MatrixEvent): boolean {
  if (filter.type !== undefined && filter.type !== event.type) return false;
  if (filter.roomId !== undefined && filter.roomId !== event.room_id) return false;
  if (filter.sender !== undefined) {
    const ok =
      typeof filter.sender === "string" ? filter.sender === event.sender : filter.sender.test(event.sender);
    if (!ok) return false;
  }
  if (filter.msgtype !== undefined && filter.msgtype !== event.content.msgtype) return false;
  if (filter.membership !== undefined && filter.membership !== event.content.membership) return false;
  return true;
}

/**
 * Refuses a handler whose cause could collide with another's of the same plugin: a command name
 * or a handler id used twice, or two handlers that could both run on one item without an `id`
 * each (their derived identities would say nothing about which is which after an upgrade).
 */
function checkRegistration(plugin: string, existing: readonly Registration[], added: Registration): void {
  const id = added.kind === "command" ? undefined : added.id;
  for (const other of existing) {
    if (added.kind === "command") {
      if (other.kind === "command" && other.name === added.name) {
        throw new PluginError(plugin, `command "${added.name}" is registered twice`);
      }
      continue;
    }
    if (id !== undefined && other.kind !== "command" && other.id === id) {
      throw new PluginError(
        plugin,
        `handler id "${id}" is given to both ${describe(other)} and ${describe(added)}; give each handler its own \`id\` (unique within the plugin)`,
      );
    }
    if (other.kind !== added.kind || !mayMeet(other, added)) continue;
    if (other.id === undefined || id === undefined) {
      throw new PluginError(
        plugin,
        `${describe(other)} and ${describe(added)} could both handle the same event: give each handler an \`id\` (the last argument: { id: "…" }), unique within the plugin, so its sends are keyed by it and not by its place among the handlers`,
      );
    }
  }
  // Backstop: the checks above make identities unique; a collision would merge two handlers' sends.
  const twin = existing.find((r) => r.identity === added.identity);
  if (twin) throw new PluginError(plugin, `${describe(twin)} and ${describe(added)} have the same identity`);
}

/** Whether two registrations of one kind could run on the same item. */
function mayMeet(a: Registration, b: Registration): boolean {
  if (a.kind === "event" && b.kind === "event") {
    // Disjoint only when some field is given in both with different plain strings; a RegExp
    // sender is assumed to overlap anything.
    return !FILTER_FIELDS.some((field) => {
      const x = a.filter[field];
      const y = b.filter[field];
      return typeof x === "string" && typeof y === "string" && x !== y;
    });
  }
  if ((a.kind === "toDevice" || a.kind === "ephemeral") && a.kind === b.kind) return a.type === b.type;
  return false;
}

/**
 * The filter as text, its fields in a fixed order whatever order the plugin wrote them in:
 * `type="m.room.message",sender=/^@bob:/i`. Strings are JSON, a RegExp is `/source/flags`
 * (its source escapes `/`), so two different filters never give the same text.
 */
function canonicalFilter(filter: EventFilter): string {
  return FILTER_FIELDS.flatMap((field) => {
    const value = filter[field];
    if (value === undefined) return [];
    return [
      `${field}=${value instanceof RegExp ? `/${value.source}/${value.flags}` : JSON.stringify(value)}`,
    ];
  }).join(",");
}

function describe(r: Registration): string {
  switch (r.kind) {
    case "event":
      return `bot.on({${canonicalFilter(r.filter)}}${r.id === undefined ? "" : `, { id: "${r.id}" }`})`;
    case "command":
      return `bot.command("${r.name}")`;
    default:
      return `bot.${r.kind === "toDevice" ? "onToDevice" : "onEphemeral"}("${r.type}"${r.id === undefined ? "" : `, { id: "${r.id}" }`})`;
  }
}
