import type { Express } from "express";
import type { Logger } from "pino";
import type { Outbox } from "../outbox/Outbox.ts";
import type { InboundItem } from "../inbound/InboundJournal.ts";
import { PluginError } from "../errors.ts";
import type { Intent, PluginDefinition } from "./definePlugin.ts";
import { createWebhookRouter } from "./webhookRouter.ts";
import { createSendContext } from "./createContext.ts";
import { Scheduler, type SchedulerClock } from "./Scheduler.ts";
import type { PluginData } from "../store/PluginStore.ts";
import type { PowerLevels } from "./PowerLevels.ts";
import { emptyPlugin, loadPlugin, type AnyHandler, type LoadedPlugin } from "./loadPlugin.ts";
import { routeEvent, type RouteOptions } from "./routeEvent.ts";
import { runJob, runWebhook, type HandlerRun, type JobRunnerOptions } from "./runJob.ts";

export type { HandlerRun } from "./runJob.ts";

export interface PluginHostOptions {
  readonly outbox: Outbox;
  readonly logger: Logger;
  /** The appservice's own user: joins rooms it is invited to, answers `help`. */
  readonly botUserId: string;
  /** Users of the appservice (bot and exclusive namespace): their events are not shown to plugins. */
  readonly isOwnUser: (userId: string) => boolean;
  /** Account actions of a user of the appservice (the bot or a ghost). */
  readonly intent: (userId: string) => Intent;
  /** Plugins' key-value spaces and schedule slots (`bot.store`, `ctx.store`, `bot.every`). */
  readonly data: PluginData;
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
  /** The clock of `bot.every` (tests). @default the system clock */
  readonly clock?: SchedulerClock;
  /** Told about every try of a handler (metrics). Synchronous. @default does nothing */
  readonly onHandlerRun?: (run: HandlerRun) => void;
  /** The appservice's tokens: a webhook secret equal to one fails its plugin's load. @default none */
  readonly reservedSecrets?: readonly string[];
}

/** Defaults of the options the configuration sets too: `config/schema.ts` reads them here. */
export const HANDLER_DEFAULTS = { handlerTimeoutMs: 30_000, maxAttempts: 5 } as const;

/**
 * Holds the loaded plugins and runs their handlers for one journaled item. Each plugin is its own
 * scope (config, logger, causes); one that fails to load is disabled and the others run; a
 * handler that throws or hangs is retried a few times and then given up, and never stops another.
 * Loading is `loadPlugin.ts`, choosing the handlers of an item `routeEvent.ts`, running them
 * `runJob.ts`; this class wires them to the outbox, the scheduler and the webhook routes.
 */
export class PluginHost {
  readonly #options: Required<Omit<PluginHostOptions, "clock" | "powerLevels">>;
  readonly #powerLevels: PowerLevels | undefined;
  readonly #plugins: LoadedPlugin[] = [];
  readonly #stopping = new AbortController();
  readonly #scheduler: Scheduler;
  readonly #everyHandlers = new Map<string, { plugin: LoadedPlugin; handler: AnyHandler }>();
  readonly #route: RouteOptions;
  readonly #runner: JobRunnerOptions;

  constructor(options: PluginHostOptions) {
    this.#options = {
      commandPrefix: "!",
      ...HANDLER_DEFAULTS,
      retryBaseMs: 200,
      onHandlerRun: () => {},
      reservedSecrets: [],
      ...options,
    };
    this.#powerLevels = options.powerLevels;
    this.#route = {
      isOwnUser: options.isOwnUser,
      commandPrefix: this.#options.commandPrefix,
      intent: options.intent,
      powerLevels: options.powerLevels,
    };
    this.#runner = { ...this.#options, stopping: this.#stopping.signal };
    this.#scheduler = new Scheduler({
      data: this.#options.data,
      log: options.logger.child({ component: "scheduler" }),
      ...(options.clock ? { clock: options.clock } : {}),
      run: async (job, slot) => {
        const entry = this.#everyHandlers.get(`${job.plugin}\u0000${job.name}`);
        if (entry?.plugin.status !== "running") return;
        await runJob(
          {
            label: `${job.plugin} every ${job.name}`,
            // The slot, not the time of the run: a slot re-run after a crash sends onto the same txnIds.
            cause: `${job.plugin}/every:${job.name}:${slot}`,
            plugin: entry.plugin,
            eventId: undefined,
            run: (ctx) => (entry.handler as (c: unknown) => unknown)({ ...ctx, slot: new Date(slot) }),
          },
          { schedule: job.name, slot: new Date(slot).toISOString() },
          this.#runner,
        );
      },
    });
  }

  /**
   * Validates the plugin's config and runs its setup. Resolves false (plugin disabled) on failure.
   * Throws a PluginError when a plugin of this name is already loaded.
   */
  async load(definition: PluginDefinition, rawConfig: unknown): Promise<boolean> {
    if (this.#plugins.some((p) => p.name === definition.name)) {
      throw new PluginError(definition.name, "a plugin with this name is already loaded");
    }
    const plugin = emptyPlugin(definition.name, this.#options.logger.child({ plugin: definition.name }));
    this.#plugins.push(plugin);
    return loadPlugin(plugin, definition, rawConfig, {
      botUserId: this.#options.botUserId,
      reservedSecrets: this.#options.reservedSecrets,
      data: this.#options.data,
      intent: this.#options.intent,
      keyedSends: (owner, key) =>
        createSendContext({
          scope: this.#options.outbox.cause(`${owner.name}/once:${key}`),
          keyed: (k) => this.#options.outbox.cause(`${owner.name}/once:${k}`),
          config: owner.config,
          log: owner.log,
          signal: this.#stopping.signal,
          intent: this.#options.intent,
          store: this.#options.data.forPlugin(owner.name),
        }),
      addSchedule: (owner, name, schedule, handler) => {
        this.#everyHandlers.set(`${owner.name}\u0000${name}`, { plugin: owner, handler });
        this.#scheduler.add({ plugin: owner.name, name, schedule });
      },
    });
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
    const payload = (item.payload ?? JSON.parse(item.json)) as Record<string, unknown>;
    // A change of power levels counts from the next command on.
    if (item.kind === "event" && payload.type === "m.room.power_levels") {
      this.#powerLevels?.forget(payload.room_id as string);
    }
    const jobs = routeEvent({ kind: item.kind, seq: item.seq, payload }, this.#plugins, this.#route);
    const results = await Promise.allSettled(
      jobs.map((job) => runJob(job, { seq: item.seq, lane: item.lane }, this.#runner)),
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
          run: (route, request, deliveryId) => runWebhook(plugin, route, request, deliveryId, this.#runner),
        }),
      );
    }
  }

  #running(): LoadedPlugin[] {
    return this.#plugins.filter((p) => p.status === "running");
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
