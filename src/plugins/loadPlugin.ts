import type { Logger } from "pino";
import { PluginError } from "../errors.ts";
import type {
  Bot,
  CommandOptions,
  Intent,
  SendContext,
  EventFilter,
  HandlerOptions,
  PluginDefinition,
  WebhookMethod,
  WebhookOptions,
  WebhookRequest,
  WebhookScheme,
} from "./definePlugin.ts";
import type { WebhookRoute } from "./webhookRouter.ts";
import { replayWindowMs, WEBHOOK_REPLAY_WINDOW_MS } from "./webhookReplay.ts";
import { parseSchedule, type Schedule } from "./schedule.ts";
import type { PluginData } from "../store/PluginStore.ts";

/** A handler as the plugin wrote it; its context type is the host's business, not this file's. */
export type AnyHandler = (ctx: never) => unknown;

/**
 * A handler as `setup` registered it. `identity` names it in its causes (`<plugin>/<identity>:…`):
 * `id:<id>` when given one, else `command:<name>`, `on{<filter>}`, `todevice:<type>` or
 * `ephemeral:<type>`. Never its place in the list: an upgrade that adds, removes or reorders
 * handlers must replay an unfinished event onto the same txnIds (DESIGN.md, invariant 9).
 */
export type HandlerRegistration = { readonly identity: string; readonly handler: AnyHandler } & (
  | { readonly kind: "event"; readonly filter: EventFilter; readonly id: string | undefined }
  | { readonly kind: "command"; readonly name: string; readonly options: CommandOptions }
  | { readonly kind: "toDevice" | "ephemeral"; readonly type: string; readonly id: string | undefined }
);

export type WebhookHandler = (ctx: never, request: WebhookRequest) => unknown;

/** A checked `bot.webhook` route, with the secret and scheme it is verified by. */
export interface Webhook extends WebhookRoute {
  readonly handler: WebhookHandler;
}

/** One plugin as the host holds it: its scope (config, logger) and everything its setup registered. */
export interface LoadedPlugin {
  readonly name: string;
  readonly config: unknown;
  readonly log: Logger;
  readonly registrations: HandlerRegistration[];
  readonly webhooks: Webhook[];
  readonly userClaims: RegExp[];
  readonly aliasClaims: Array<{ pattern: RegExp; create: ((alias: string) => Promise<boolean>) | undefined }>;
  readonly startHooks: Array<() => unknown>;
  readonly stopHooks: Array<() => unknown>;
  readonly schedules: Set<string>;
  status: "running" | "failed";
  error?: string;
}

export interface LoadPluginOptions {
  /** The appservice's own user (`bot.userId`). */
  readonly botUserId: string;
  /** Plugins' key-value spaces (`bot.store`). */
  readonly data: PluginData;
  /**
   * Takes a `bot.every` schedule, checked and parsed, to run `handler` at its slots. Called
   * during `setup`; may throw, which fails the plugin's load.
   */
  readonly addSchedule: (plugin: LoadedPlugin, name: string, schedule: Schedule, handler: AnyHandler) => void;
  /** The appservice's hs_token and as_token: no webhook secret may be one of them. @default none */
  readonly reservedSecrets?: readonly string[];
  /** The send helpers of `bot.once(key)`, keyed `<plugin>/once:<key>` as `ctx.once(key)` is. */
  readonly keyedSends?: (plugin: LoadedPlugin, key: string) => SendContext<unknown>;
  /** `bot.intent(userId)`. */
  readonly intent?: (userId: string) => Intent;
}

const FILTER_FIELDS = ["type", "roomId", "sender", "msgtype", "membership"] as const;
const WEBHOOK_METHODS: readonly WebhookMethod[] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const WEBHOOK_PATH = /^(?:\/[A-Za-z0-9._~-]+)+$/;
const SHORT_SECRET = 16;

/** A plugin with nothing registered yet, "running" until its load fails. No I/O. */
export function emptyPlugin(name: string, log: Logger): LoadedPlugin {
  return {
    name,
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
}

/**
 * Validates the definition's config and runs its setup against a `Bot` that fills `plugin`.
 * Resolves true when it loaded; false when it did not, with `plugin` marked failed and the
 * reason logged and kept in `plugin.error`. Never rejects.
 */
export async function loadPlugin(
  plugin: LoadedPlugin,
  definition: PluginDefinition,
  rawConfig: unknown,
  options: LoadPluginOptions,
): Promise<boolean> {
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
    await definition.setup(botFor(plugin, options) as Bot<never>);
    plugin.log.info({ handlers: plugin.registrations.length }, "plugin loaded");
    return true;
  } catch (error) {
    plugin.status = "failed";
    plugin.error = error instanceof Error ? error.message : String(error);
    plugin.log.error({ err: error }, "plugin failed to load; it is disabled, the others run");
    return false;
  }
}

/** The `Bot` a plugin's setup registers on: each call is checked, then recorded in `plugin`. */
function botFor(plugin: LoadedPlugin, options: LoadPluginOptions): Bot<unknown> {
  const add = (registration: HandlerRegistration) => {
    checkRegistration(plugin.name, plugin.registrations, registration);
    plugin.registrations.push(registration);
  };
  const idOf = (handlerOptions: HandlerOptions | undefined): string | undefined => {
    const id = handlerOptions?.id;
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
    handlerOptions?: HandlerOptions,
  ) => {
    const id = idOf(handlerOptions);
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
    userId: options.botUserId,
    on: (filter, handler, handlerOptions) => {
      const id = idOf(handlerOptions);
      const normalized = typeof filter === "string" ? { type: filter } : filter;
      const identity = id === undefined ? `on{${canonicalFilter(normalized)}}` : `id:${id}`;
      add({ kind: "event", filter: normalized, id, handler: handler as AnyHandler, identity });
    },
    command: (name, handler, commandOptions = {}) => {
      const lower = name.toLowerCase();
      add({ kind: "command", name: lower, options: commandOptions, handler, identity: `command:${lower}` });
    },
    onToDevice: (type, handler, handlerOptions) =>
      onItems("toDevice", type, handler as AnyHandler, handlerOptions),
    onEphemeral: (type, handler, handlerOptions) =>
      onItems("ephemeral", type, handler as AnyHandler, handlerOptions),
    webhook: (method, path, handler, webhookOptions) =>
      plugin.webhooks.push(
        checkWebhook(plugin, method, path, handler, webhookOptions, options.reservedSecrets),
      ),
    claimUsers: (pattern) => plugin.userClaims.push(pattern),
    claimAliases: (pattern, create) => plugin.aliasClaims.push({ pattern, create }),
    store: options.data.forPlugin(plugin.name),
    every: (spec, handler, everyOptions = {}) => {
      const name = everyOptions.name ?? String(spec);
      if (plugin.schedules.has(name)) {
        throw new PluginError(plugin.name, `schedule "${name}" is registered twice; give one a name`);
      }
      let schedule;
      try {
        schedule = parseSchedule(spec, everyOptions.timezone);
      } catch (error) {
        throw new PluginError(plugin.name, (error as Error).message);
      }
      plugin.schedules.add(name);
      options.addSchedule(plugin, name, schedule, handler as AnyHandler);
    },
    onStart: (hook) => plugin.startHooks.push(hook),
    onStop: (hook) => plugin.stopHooks.push(hook),
    once: (key) => {
      if (!options.keyedSends) throw new PluginError(plugin.name, "bot.once is not available here");
      return options.keyedSends(plugin, key);
    },
    intent: (userId) => {
      if (!options.intent) throw new PluginError(plugin.name, "bot.intent is not available here");
      return options.intent(userId);
    },
  };
}

/**
 * A webhook route as registered, refused when its method or path is not one we serve, it is
 * registered twice, or it has no secret (from its options or the plugin config's `secret`) or
 * one of the appservice's tokens as its secret, or (HMAC) its replay window is not a positive number.
 */
function checkWebhook(
  plugin: LoadedPlugin,
  method: WebhookMethod,
  path: string,
  handler: WebhookHandler,
  options: WebhookOptions = {},
  reservedSecrets: readonly string[] = [],
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
  if (reservedSecrets.includes(secret)) {
    throw new PluginError(
      plugin.name,
      `webhook ${route}: its secret is the registration's hs_token or as_token; give the webhook a secret of its own`,
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
  // Only an HMAC route remembers bodies: a bearer route's delivery id is as trusted as its body.
  const replayWindow =
    scheme === "hmac-sha256" ? replayWindowMs(options.replayWindowMs, config) : WEBHOOK_REPLAY_WINDOW_MS;
  if (typeof replayWindow === "string")
    throw new PluginError(plugin.name, `webhook ${route}: ${replayWindow}`);
  if (secret.length < SHORT_SECRET) {
    plugin.log.warn({ route }, `the secret of webhook ${route} is shorter than ${SHORT_SECRET} characters`);
  }
  return {
    method,
    path,
    secret,
    scheme,
    deliveryId: options.deliveryId,
    replayWindowMs: replayWindow,
    handler,
  };
}

/**
 * Refuses a handler whose cause could collide with another's of the same plugin: a command name
 * or a handler id used twice, or two handlers that could both run on one item without an `id`
 * each (their derived identities would say nothing about which is which after an upgrade).
 */
function checkRegistration(
  plugin: string,
  existing: readonly HandlerRegistration[],
  added: HandlerRegistration,
): void {
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
function mayMeet(a: HandlerRegistration, b: HandlerRegistration): boolean {
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

function describe(r: HandlerRegistration): string {
  switch (r.kind) {
    case "event":
      return `bot.on({${canonicalFilter(r.filter)}}${r.id === undefined ? "" : `, { id: "${r.id}" }`})`;
    case "command":
      return `bot.command("${r.name}")`;
    default:
      return `bot.${r.kind === "toDevice" ? "onToDevice" : "onEphemeral"}("${r.type}"${r.id === undefined ? "" : `, { id: "${r.id}" }`})`;
  }
}
