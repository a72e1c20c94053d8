import type { Logger } from "pino";
import type { Outbox } from "../outbox/Outbox.ts";
import { isJournalUnavailable } from "../errors.ts";
import type { Intent, SendContext, WebhookRequest } from "./definePlugin.ts";
import { createSendContext } from "./createContext.ts";
import { lazyChildLogger } from "../logging/lazyChildLogger.ts";
import type { PluginData } from "../store/PluginStore.ts";
import type { LoadedPlugin, Webhook } from "./loadPlugin.ts";
import type { Job } from "./routeEvent.ts";
import { signedBodyHash } from "./webhookReplay.ts";

/** One try of one handler on one item. */
export interface HandlerRun {
  /** The plugin's name; "courier" for the framework's own jobs (auto-join, help). */
  readonly plugin: string;
  readonly handler: string;
  readonly durationMs: number;
  readonly ok: boolean;
}

/** What running a handler needs: where its sends go, its limits, and the host's stop signal. */
export interface JobRunnerOptions {
  /** Gives each try its cause scope. */
  readonly outbox: Outbox;
  /** The log of the framework's own jobs. */
  readonly logger: Logger;
  readonly intent: (userId: string) => Intent;
  /** Gives each plugin its store (`ctx.store`). */
  readonly data: PluginData;
  readonly handlerTimeoutMs: number;
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly onHandlerRun: (run: HandlerRun) => void;
  /** Aborted when the host stops: aborts running handlers' signals, and no retry starts after it. */
  readonly stopping: AbortSignal;
  /**
   * The time of an HMAC webhook's replay window: the host's `clock` option (it reaches here with
   * the host's options). @default the system clock
   */
  readonly clock?: { now(): number };
}

/**
 * Runs a job until it succeeds, up to `maxAttempts` tries with a doubling pause between them
 * (none after the host stops), and reports each try. Resolves undefined on success, or the
 * failure (`<label>: <error>`) when it is given up. Rejects only with a JournalUnavailableError
 * (a send could not be journaled), at once, without retrying.
 */
export async function runJob(
  job: Job,
  bindings: Record<string, unknown>,
  options: JobRunnerOptions,
): Promise<string | undefined> {
  const { maxAttempts, retryBaseMs, logger } = options;
  const log = lazyChildLogger(job.plugin?.log ?? logger, { eventId: job.eventId, ...bindings });
  // One cause scope per job: a retry numbers its sends from zero again, onto the same txnIds.
  let lastError = "";
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const started = performance.now();
    const report = (ok: boolean) =>
      options.onHandlerRun({
        plugin: job.plugin?.name ?? "courier",
        handler: job.label,
        durationMs: performance.now() - started,
        ok,
      });
    try {
      await runOnce(job.cause, job.plugin, log, (ctx) => job.run(ctx), options);
      report(true);
      return undefined;
    } catch (error) {
      report(false);
      if (isJournalUnavailable(error)) throw error;
      lastError = error instanceof Error ? error.message : String(error);
      log.warn({ err: error, attempt, handler: job.label }, "handler failed");
    }
    if (options.stopping.aborted) break;
    if (attempt < maxAttempts) await new Promise((r) => setTimeout(r, retryBaseMs * 2 ** (attempt - 1)));
  }
  log.error({ handler: job.label, error: lastError }, "handler given up; the event is dead-lettered for it");
  return `${job.label}: ${lastError}`;
}

/**
 * Runs one webhook delivery once, under its cause (`<plugin>/webhook:<METHOD> <path>:<delivery id>`):
 * the sender retries, not us. Resolves with the delivery id to answer when the handler did;
 * rejects when it fails or times out.
 *
 * An HMAC route first claims the signed body for its `replayWindowMs` (a day by default): the
 * same body already run under another delivery id inside the window is a replay
 * (the delivery id is not signed), and resolves with that first delivery's id without running
 * the handler. The same delivery id runs again as before (its sends collapse onto its txnIds);
 * a handler that fails gives its claim up, so the sender's retry runs whatever its id.
 */
export async function runWebhook(
  plugin: LoadedPlugin,
  route: Webhook,
  request: WebhookRequest,
  deliveryId: string,
  options: JobRunnerOptions,
): Promise<string> {
  const label = `${route.method} ${route.path}`;
  const log = plugin.log.child({ webhook: label, deliveryId });
  const signed = route.scheme === "hmac-sha256" ? signedBodyHash(request.rawBody) : undefined;
  if (signed !== undefined) {
    const now = (options.clock ?? Date).now();
    const first = await options.data.claimWebhookBody(
      plugin.name,
      label,
      signed,
      deliveryId,
      now,
      route.replayWindowMs,
    );
    if (first !== undefined) {
      log.info(
        { firstDeliveryId: first },
        "signed body already run under another delivery id; not run again",
      );
      return first;
    }
  }
  try {
    await runOnce(
      `${plugin.name}/webhook:${label}:${deliveryId}`,
      plugin,
      log,
      (ctx) =>
        (route.handler as unknown as (c: unknown, r: WebhookRequest) => unknown)(
          { ...ctx, request, deliveryId },
          request,
        ),
      options,
    );
  } catch (error) {
    if (signed !== undefined) {
      await options.data
        .releaseWebhookBody(plugin.name, label, signed, deliveryId)
        .catch((releaseError: unknown) => {
          log.warn({ err: releaseError }, "could not give up the claim of a failed delivery's signed body");
        });
    }
    throw error;
  }
  log.debug("webhook handled");
  return deliveryId;
}

/**
 * Runs `run` once with a fresh send context on `cause`, under the handler timeout and the
 * host's stop signal. Resolves when it resolves; rejects with its error or a timeout.
 */
async function runOnce(
  cause: string,
  plugin: LoadedPlugin | undefined,
  log: Logger,
  run: (ctx: SendContext<unknown>) => unknown,
  options: JobRunnerOptions,
): Promise<void> {
  const { handlerTimeoutMs, outbox, stopping } = options;
  const controller = new AbortController();
  const onStop = () => controller.abort();
  stopping.addEventListener("abort", onStop);
  const owner = plugin?.name ?? "courier";
  const ctx = createSendContext({
    scope: outbox.cause(cause),
    keyed: (key) => outbox.cause(`${owner}/once:${key}`),
    config: plugin?.config,
    log,
    signal: controller.signal,
    intent: options.intent,
    store: options.data.forPlugin(owner),
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
    stopping.removeEventListener("abort", onStop);
  }
}
