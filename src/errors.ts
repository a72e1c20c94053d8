/**
 * Every error the framework raises on purpose, in one place: a stable `code`, the Matrix
 * `errcode` and HTTP status it maps to when it has to be answered over HTTP, and a message a
 * person can act on.
 */
export class CourierError extends Error {
  readonly code: string;
  readonly errcode: string;
  readonly status: number;
  constructor(code: string, errcode: string, status: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.errcode = errcode;
    this.status = status;
  }
}

/** Content too big for one event; refused at enqueue so nothing is journaled that can't be sent. */
export class EventTooLargeError extends CourierError {
  readonly bytes: number;
  readonly limit: number;
  constructor(what: string, bytes: number, limit: number) {
    super(
      "COURIER_EVENT_TOO_LARGE",
      "M_TOO_LARGE",
      413,
      `${what} is ${bytes} bytes; the limit is ${limit} bytes for a whole event. Split it or upload it as media.`,
    );
    this.bytes = bytes;
    this.limit = limit;
  }
}

/** The homeserver refused a journaled request for good; the row is dead-lettered with this reason. */
export class DeadLetterError extends CourierError {
  readonly txnId: string;
  constructor(txnId: string, errcode: string, status: number, reason: string) {
    super("COURIER_DEAD_LETTER", errcode, status, `Request ${txnId} was dead-lettered: ${reason}`);
    this.txnId = txnId;
  }
}

/**
 * A request (or account action) as a user the appservice may not act as: not its bot and not in
 * its registration's user namespaces. Refused before anything is journaled or sent: the
 * homeserver would refuse it (403 / M_EXCLUSIVE) and it would end as a dead letter.
 */
export class NotOurUserError extends CourierError {
  readonly userId: string;
  constructor(userId: string) {
    super(
      "COURIER_NOT_OURS",
      "M_EXCLUSIVE",
      403,
      `${userId} is outside the appservice's user namespaces: it cannot send or act as that user (use the bot, or a user id the registration's namespaces.users match)`,
    );
    this.userId = userId;
  }
}

/** The outbox was stopped before the request could be delivered; it stays journaled for the next start. */
export class OutboxStoppedError extends CourierError {
  constructor() {
    super(
      "COURIER_OUTBOX_STOPPED",
      "M_UNKNOWN",
      503,
      "The outbox is stopped; the request stays journaled and is sent on the next start.",
    );
  }
}

/**
 * The store refused to journal outbound requests (disk full, read-only file, I/O error): nothing
 * of the call was journaled and nothing of it will be sent. Transient as far as the caller can
 * tell: the same call succeeds, with the same txnIds, once the store is writable again. The
 * dispatcher keeps the inbound event that caused it and runs its handlers again later.
 */
export class JournalUnavailableError extends CourierError {
  constructor(cause: unknown) {
    super(
      "COURIER_JOURNAL_UNAVAILABLE",
      "M_UNKNOWN",
      503,
      `The outbox store could not commit the request (${causeText(cause)}); nothing was journaled or sent. Retry once the store is writable again.`,
      { cause },
    );
  }
}

/** Whether `error`, or an error it wraps (`cause`), is a JournalUnavailableError. */
export function isJournalUnavailable(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof JournalUnavailableError) return true;
  }
  return false;
}

function causeText(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}

/** A plugin could not be loaded or configured; it is disabled and the others run. */
export class PluginError extends CourierError {
  readonly plugin: string;
  constructor(plugin: string, message: string, options?: { cause?: unknown }) {
    super("COURIER_PLUGIN", "M_UNKNOWN", 500, `plugin "${plugin}": ${message}`, options);
    this.plugin = plugin;
  }
}

/**
 * One thing wrong with a config or registration file, at one place. `line` is absent when the
 * problem has no single place in the file (a missing file, a token mismatch); `variable` names
 * the COURIER_* environment variable that supplied the value, when one did.
 */
export interface ConfigProblem {
  /** The file at fault, or "environment" for a COURIER_* variable. */
  readonly file: string;
  /** 1-based line of the key (of its parent map when the key is missing). */
  readonly line?: number;
  /** Where in the document: "outbox.rate.perSecond", "plugins[1].name". */
  readonly key?: string;
  readonly variable?: string;
  readonly message: string;
}

/** `config.yaml:12: outbox.rate.perSecond: expected a number, got "fast"`; a bare message when it has no place. */
export function formatConfigProblem(problem: ConfigProblem): string {
  const where =
    problem.variable ??
    (problem.line !== undefined ? `${problem.file}:${problem.line}` : problem.key ? problem.file : undefined);
  return [where, problem.key, problem.message].filter(Boolean).join(": ");
}

/**
 * The configuration (config file, environment, registration) is unusable: nothing was started
 * and nothing in the store was touched. The message has one line per problem, all of them.
 */
export class ConfigError extends CourierError {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super("COURIER_CONFIG", "M_UNKNOWN", 500, problems.map(formatConfigProblem).join("\n"));
    this.problems = problems;
  }
}

/**
 * A request to the appservice endpoint (from the homeserver) refused with a Matrix error: a
 * missing or wrong hs_token, a body that is not JSON, too large, a shutdown in progress. The
 * HTTP layer answers `{errcode, error: message}` with `status`; nothing is journaled.
 */
export class InboundRequestError extends CourierError {
  constructor(code: string, errcode: string, status: number, message: string, options?: { cause?: unknown }) {
    super(code, errcode, status, message, options);
  }
}

/**
 * A request refused because its client address failed its credentials too often
 * (`FailureThrottle`): 429 `M_LIMIT_EXCEEDED` with `retry_after_ms`, as the homeserver answers.
 */
export class ThrottledRequestError extends InboundRequestError {
  readonly retryAfterMs: number;
  constructor(retryAfterMs: number) {
    super(
      "COURIER_THROTTLED",
      "M_LIMIT_EXCEEDED",
      429,
      `Too many failed attempts from this address; try again in ${Math.ceil(retryAfterMs / 1000)} s.`,
    );
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * A bridge connector is not connected to its network right now (thrown by `sendMessage`): the
 * send stays at the head of its channel's remote outbox and is tried again, without limit.
 */
export class RemoteUnavailableError extends CourierError {
  constructor(network: string, detail = "not connected") {
    super(
      "COURIER_REMOTE_UNAVAILABLE",
      "M_UNKNOWN",
      503,
      `${network}: ${detail}; the message waits in the remote outbox`,
    );
  }
}

/**
 * The remote network refused a message for good (thrown by a connector's `sendMessage`): the
 * framework stops trying and says so in the Matrix room.
 */
export class PermanentRemoteError extends CourierError {
  constructor(network: string, reason: string) {
    super("COURIER_REMOTE_REFUSED", "M_FORBIDDEN", 403, `${network} refused the message: ${reason}`);
  }
}
