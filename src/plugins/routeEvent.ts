import type { InboundKind } from "../inbound/InboundJournal.ts";
import type { EventFilter, Intent, SendContext } from "./definePlugin.ts";
import type { EphemeralEvent, MatrixEvent, ToDeviceEvent } from "./events.ts";
import { createEventContext } from "./createContext.ts";
import { parseCommand } from "./parseCommand.ts";
import { requiredArgumentCount, usageReply } from "./commandUsage.ts";
import type { PowerLevels } from "./PowerLevels.ts";
import type { AnyHandler, LoadedPlugin } from "./loadPlugin.ts";

/** A unit of work for one item: a plugin's handler, or the framework's own (auto-join, help). */
export interface Job {
  /** Names the handler in logs, run reports and dead-letter reasons: `<plugin> command <name>`. */
  readonly label: string;
  /** The cause key its sends are keyed by (docs/plugins.md, "Handler identities and upgrades"). */
  readonly cause: string;
  /** The plugin whose handler it is; undefined for the framework's own jobs. */
  readonly plugin: LoadedPlugin | undefined;
  readonly eventId: string | undefined;
  /** Runs the handler once with the send context of one try. */
  run(ctx: SendContext<unknown>): unknown;
}

/** An inbound item as routing sees it: what it is, its place in the journal, and its content. */
export interface RoutedItem {
  readonly kind: InboundKind;
  /** Persistent: the cause of to-device and ephemeral handlers, the same on a replay. */
  readonly seq: number;
  /** The item as parsed (a room event, a to-device message, an ephemeral event, …). */
  readonly payload: Record<string, unknown>;
}

export interface RouteOptions {
  /** Users of the appservice: their events reach no plugin; an invite of one is joined. */
  readonly isOwnUser: (userId: string) => boolean;
  readonly commandPrefix: string;
  /** Account actions, for the auto-join job (used when the job runs, not by routing). */
  readonly intent: (userId: string) => Intent;
  /** For commands with `minPowerLevel` (read when the job runs); undefined: such commands are refused. */
  readonly powerLevels: PowerLevels | undefined;
}

/**
 * The jobs an inbound item causes: the handlers of the running plugins that want it, in the
 * plugins' order and then their handlers' order, plus the framework's own: joining a room one of
 * our users is invited to, and answering `help` when no plugin has that command. Pure: it reads
 * the plugins and builds jobs, and nothing runs (or does I/O) until a job's `run` is called.
 * Returns an empty list when nothing wants the item (and for kinds no handler takes).
 */
export function routeEvent(item: RoutedItem, plugins: readonly LoadedPlugin[], options: RouteOptions): Job[] {
  if (item.kind === "event") return eventJobs(item.payload as unknown as MatrixEvent, plugins, options);
  const { payload } = item;
  const type = payload.type as string;
  const jobs: Job[] = [];
  for (const plugin of plugins) {
    if (plugin.status !== "running") continue;
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

function eventJobs(event: MatrixEvent, plugins: readonly LoadedPlugin[], options: RouteOptions): Job[] {
  const jobs: Job[] = [];
  const { isOwnUser, commandPrefix } = options;
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
      run: () => options.intent(invitee).join(event.room_id),
    });
  }
  // Echo suppression: what our own users said is not news to our plugins.
  if (isOwnUser(event.sender)) return jobs;

  const body =
    typeof event.content.body === "string" && event.type === "m.room.message"
      ? event.content.body
      : undefined;
  const command = body === undefined ? undefined : parseCommand(body, commandPrefix);
  let commandHandled = false;
  for (const plugin of plugins) {
    if (plugin.status !== "running") continue;
    for (const r of plugin.registrations) {
      const cause = `${plugin.name}/${r.identity}:${event.event_id}`;
      if (r.kind === "event" && matches(r.filter, event)) {
        jobs.push({
          label: `${plugin.name} on ${event.type}`,
          cause,
          plugin,
          eventId: event.event_id,
          run: (ctx) => call(r.handler, ctx, event),
        });
      } else if (r.kind === "command" && command?.name === r.name) {
        commandHandled = true;
        jobs.push({
          label: `${plugin.name} command ${r.name}`,
          cause,
          plugin,
          eventId: event.event_id,
          run: async (ctx) => {
            const refusal = await refusalOf(r.name, r.options.minPowerLevel, event, options);
            if (refusal) return createEventContext(ctx, event).reply(refusal);
            // Checked here, for every plugin: a handler only runs with what its usage requires.
            const { usage } = r.options;
            if (usage !== undefined && command.args.length < requiredArgumentCount(usage))
              return createEventContext(ctx, event).reply(usageReply(commandPrefix, r.name, usage));
            return call(r.handler, ctx, event, { command });
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
      run: (ctx) => createEventContext(ctx, event).reply(helpText(plugins, commandPrefix)),
    });
  }
  return jobs;
}

/** Whether a room event passes a `bot.on` filter: every field given must match. */
export function matches(filter: EventFilter, event: MatrixEvent): boolean {
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

/** The answer to `help`: every command of the running plugins, with usage, help and power level. */
export function helpText(plugins: readonly LoadedPlugin[], prefix: string): string {
  const lines = [`Commands (prefix ${prefix}):`, `${prefix}help: this list`];
  for (const plugin of plugins) {
    if (plugin.status !== "running") continue;
    for (const r of plugin.registrations) {
      if (r.kind !== "command") continue;
      const usage = r.options.usage ? ` ${r.options.usage}` : "";
      const power = r.options.minPowerLevel === undefined ? "" : ` (power level ${r.options.minPowerLevel})`;
      lines.push(`${prefix}${r.name}${usage}: ${r.options.help ?? `(${plugin.name})`}${power}`);
    }
  }
  return lines.join("\n");
}

/** Why the sender may not run the command here; undefined when they may. Reads power levels (I/O on a cache miss). */
async function refusalOf(
  name: string,
  minPowerLevel: number | undefined,
  event: MatrixEvent,
  options: RouteOptions,
): Promise<string | undefined> {
  if (minPowerLevel === undefined) return undefined;
  const command = `${options.commandPrefix}${name}`;
  if (!options.powerLevels)
    return `${command} needs power level ${minPowerLevel}, and power levels cannot be checked here.`;
  const level = await options.powerLevels.levelOf(event.room_id, event.sender);
  return level >= minPowerLevel
    ? undefined
    : `${command} needs power level ${minPowerLevel} in this room; you have ${level}.`;
}

function call(
  handler: AnyHandler,
  ctx: SendContext<unknown>,
  event: MatrixEvent,
  extra: object = {},
): unknown {
  return (handler as (c: unknown) => unknown)({ ...createEventContext(ctx, event), ...extra });
}
