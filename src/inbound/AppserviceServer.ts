import { createServer, type Server } from "node:http";
import type { Duplex } from "node:stream";
import express, { type Express, type NextFunction, type Request, type Response } from "express";
import type { Logger } from "pino";
import { InboundRequestError } from "../errors.ts";
import { answerRefusal } from "../http/answerRefusal.ts";
import { secretMatches, verifyBearer } from "../http/auth.ts";
import { createLogger } from "../logging/createLogger.ts";
import type { InboundItem, JournalOutcome } from "./InboundJournal.ts";
import type { AppserviceOptions, JournaledCounts, ListenOptions, Readiness } from "./options.ts";
import { parseTransaction } from "./parseTransaction.ts";

export type { AppserviceOptions, AppserviceQueries, Journaled, ListenOptions, Readiness } from "./options.ts";

/** The express app of the appservice endpoint, plus what the runtime reads from it. */
export type AppserviceApp = Express & {
  /** When the homeserver last pinged us (ms epoch); undefined when it never did. No I/O. */
  lastPingAt(): number | undefined;
};

/** A listening server; `close()` stops accepting, lets running requests finish, drops idle keep-alive sockets. */
export interface ListeningAppservice {
  readonly server: Server;
  readonly port: number;
  /** Resolves once every connection is closed; connections still busy after `deadlineMs` are cut. */
  close(deadlineMs?: number): Promise<void>;
}

const DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024;
const PING_MAX_BODY_BYTES = 64 * 1024;
const PREFIX = "/_matrix/app/v1";

/** Every refusal of the endpoint, defined once: stable code, Matrix errcode, status, message. */
const refuse = {
  // M_MISSING_TOKEN, as the Client-Server API (and Synapse) answer a request without a token;
  // the Application Service API only names M_FORBIDDEN, for a token that does not match.
  missingToken: (queryTokenRefused: boolean) =>
    new InboundRequestError(
      "COURIER_AS_MISSING_TOKEN",
      "M_MISSING_TOKEN",
      401,
      queryTokenRefused
        ? "The hs_token in the query string is not accepted (appservice.allowQueryToken is off); send it as 'Authorization: Bearer <hs_token>'."
        : "Missing credentials: send the registration's hs_token as 'Authorization: Bearer <hs_token>'.",
    ),
  wrongToken: () =>
    new InboundRequestError(
      "COURIER_AS_WRONG_TOKEN",
      "M_FORBIDDEN",
      403,
      "The credentials are not this appservice's hs_token (a Bearer token is expected).",
    ),
  shuttingDown: () =>
    new InboundRequestError(
      "COURIER_AS_SHUTTING_DOWN",
      "M_UNKNOWN",
      503,
      "The appservice is shutting down and takes no new transactions; retry later.",
    ),
  tooLarge: (limit: number) =>
    new InboundRequestError(
      "COURIER_AS_TOO_LARGE",
      "M_TOO_LARGE",
      413,
      `The request body is larger than ${limit} bytes (appservice.maxBodyBytes).`,
    ),
  notJson: (detail: string) =>
    new InboundRequestError(
      "COURIER_AS_NOT_JSON",
      "M_NOT_JSON",
      400,
      `The body is not valid JSON: ${detail}`,
    ),
  badJson: (detail: string) => new InboundRequestError("COURIER_AS_BAD_JSON", "M_BAD_JSON", 400, detail),
  badRequest: (status: number, detail: string) =>
    new InboundRequestError("COURIER_AS_BAD_REQUEST", "M_UNKNOWN", status, detail),
  badParam: () =>
    new InboundRequestError(
      "COURIER_AS_BAD_PARAM",
      "M_INVALID_PARAM",
      400,
      "A path segment is not valid URL encoding.",
    ),
  notFound: (what: string) => new InboundRequestError("COURIER_AS_NOT_FOUND", "M_NOT_FOUND", 404, what),
  unrecognized: (method: string, path: string) =>
    new InboundRequestError(
      "COURIER_AS_UNRECOGNIZED",
      "M_UNRECOGNIZED",
      404,
      `Unrecognized request: ${method} ${path}`,
    ),
  wrongMethod: (method: string, path: string) =>
    new InboundRequestError(
      "COURIER_AS_WRONG_METHOD",
      "M_UNRECOGNIZED",
      405,
      `Method ${method} is not allowed on ${path}`,
    ),
  journalFailed: (cause: unknown) =>
    new InboundRequestError(
      "COURIER_AS_JOURNAL_FAILED",
      "M_UNKNOWN",
      500,
      "The transaction could not be journaled; it was not acknowledged, send it again.",
      { cause },
    ),
  internal: (cause: unknown) =>
    new InboundRequestError("COURIER_AS_INTERNAL", "M_UNKNOWN", 500, "Internal error; it was logged.", {
      cause,
    }),
};

/**
 * The appservice endpoint (Application Service API v1) as an express app: transactions are
 * journaled and committed before they are answered 200; user and alias queries; ping; health
 * and readiness. Every answer is JSON; every error is `{errcode, error}`.
 */
export function createAppserviceApp(options: AppserviceOptions): AppserviceApp {
  if (typeof options.hsToken !== "string" || options.hsToken.length === 0) {
    throw new TypeError(`Expected \`hsToken\` to be a non-empty string, got ${typeof options.hsToken}`);
  }
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes <= 0) {
    throw new TypeError(`Expected \`maxBodyBytes\` to be a positive integer, got ${maxBodyBytes}`);
  }
  const log: Logger = options.logger ?? createLogger();
  const journal = options.journal;
  const queries = options.queries ?? { userExists: async () => false, aliasExists: async () => false };
  const accepting = options.accepting ?? (() => true);
  const readiness = options.readiness ?? ((): Readiness => ({ ready: true, checks: {} }));
  const allowQueryToken = options.allowQueryToken ?? false;
  let lastPingAt: number | undefined;

  const app = express() as AppserviceApp;
  app.set("x-powered-by", false);
  app.set("etag", false);
  app.set("env", "production");
  // Matrix paths are case-sensitive: /TRANSACTIONS/ is not an endpoint.
  app.set("case sensitive routing", true);
  app.set("trust proxy", options.trustedProxies?.length ? [...options.trustedProxies] : false);
  app.lastPingAt = () => lastPingAt;

  const authenticate = (req: Request, _res: Response, next: NextFunction): void => {
    // An empty header carries no credentials: it is "missing", not "wrong".
    const header = req.headers.authorization?.trim() || undefined;
    const query: unknown = req.query.access_token;
    // Repeated (`?access_token=a&access_token=b`) is an array: never equal to the token.
    const queryToken = query === undefined ? undefined : typeof query === "string" ? query : "";
    if (header !== undefined) {
      if (verifyBearer(header, options.hsToken) !== "ok") return next(refuse.wrongToken());
      // The spec: when both are sent, both must match.
      if (queryToken !== undefined && !secretMatches(queryToken, options.hsToken))
        return next(refuse.wrongToken());
    } else {
      if (queryToken !== undefined && !allowQueryToken) return next(refuse.missingToken(true));
      if (queryToken === undefined) return next(refuse.missingToken(false));
      if (!secretMatches(queryToken, options.hsToken)) return next(refuse.wrongToken());
    }
    next();
  };

  const rawBody = (limit: number) => express.raw({ type: () => true, limit });

  const notAllowed = (req: Request, _res: Response, next: NextFunction) =>
    next(refuse.wrongMethod(req.method, req.path));

  app
    .route(`${PREFIX}/transactions/:txnId`)
    .put(
      authenticate,
      (_req, _res, next) => next(accepting() ? undefined : refuse.shuttingDown()),
      rawBody(maxBodyBytes),
      async (req, res) => {
        const started = performance.now();
        const txnId = req.params.txnId as string;
        res.locals.txnId = txnId;
        const body = bodyOf(req);
        const parsed = parseTransaction(body, txnId);
        if (!parsed.ok)
          throw parsed.kind === "notJson" ? refuse.notJson(parsed.detail) : refuse.badJson(parsed.detail);
        let outcome: JournalOutcome;
        try {
          outcome = await journal.journal(txnId, parsed.items);
        } catch (error) {
          try {
            options.onJournalFailed?.(error);
          } catch (hookError) {
            log.error({ err: hookError, txnId }, "onJournalFailed threw");
          }
          throw refuse.journalFailed(error);
        }
        const counts = countByKind(outcome.items);
        if (outcome.rejected > 0) {
          // Journaled as rejected, with these reasons; the items beside them are handled.
          const reasons = parsed.items.flatMap((item) =>
            item.rejected === undefined ? [] : [item.rejected],
          );
          log.warn({ txnId, rejected: outcome.rejected, reasons }, "malformed items rejected");
        }
        if (outcome.items.length + outcome.rejected > 0) {
          try {
            options.onJournaled?.({ ...outcome, counts });
          } catch (error) {
            log.error({ err: error, txnId }, "onJournaled threw; the transaction is journaled all the same");
          }
        }
        res.status(200).json({});
        log.debug(
          {
            txnId,
            duplicates: outcome.duplicates,
            bytes: body.length,
            ...counts,
            durationMs: Math.round((performance.now() - started) * 1000) / 1000,
          },
          outcome.items.length + outcome.rejected === 0
            ? "transaction already journaled"
            : "transaction journaled",
        );
      },
    )
    .all(notAllowed);

  app
    .route(`${PREFIX}/users/:userId`)
    .get(authenticate, async (req, res) => {
      const userId = req.params.userId as string;
      if (!(await query(() => queries.userExists(userId))))
        throw refuse.notFound(`${userId} is not a user of this appservice`);
      res.status(200).json({});
    })
    .all(notAllowed);

  app
    .route(`${PREFIX}/rooms/:alias`)
    .get(authenticate, async (req, res) => {
      const alias = req.params.alias as string;
      if (!(await query(() => queries.aliasExists(alias))))
        throw refuse.notFound(`${alias} is not a room alias of this appservice`);
      res.status(200).json({});
    })
    .all(notAllowed);

  app
    .route(`${PREFIX}/ping`)
    .post(authenticate, rawBody(PING_MAX_BODY_BYTES), (req, res) => {
      const body = bodyOf(req);
      let transactionId: string | undefined;
      if (body.length > 0) {
        let value: unknown;
        try {
          value = JSON.parse(body.toString("utf8"));
        } catch (error) {
          throw refuse.notJson((error as Error).message);
        }
        if (!isObject(value)) throw refuse.badJson("The ping body must be a JSON object.");
        if (typeof value.transaction_id === "string") transactionId = value.transaction_id;
      }
      lastPingAt = Date.now();
      try {
        options.onPing?.(transactionId);
      } catch (error) {
        log.error({ err: error }, "onPing threw");
      }
      log.info({ transactionId }, "pinged by the homeserver");
      res.status(200).json({});
    })
    .all(notAllowed);

  app
    .route("/health")
    .get((_req, res) => {
      res.status(200).json({ status: "ok" });
    })
    .all(notAllowed);

  app
    .route("/ready")
    .get((_req, res) => {
      let state: Readiness;
      try {
        state = readiness();
      } catch (error) {
        log.error({ err: error }, "readiness check threw");
        state = { ready: false, checks: { error: "the readiness check threw; see the log" } };
      }
      res.status(state.ready ? 200 : 503).json({ ready: state.ready, checks: state.checks });
    })
    .all(notAllowed);

  options.routes?.(app);

  app.use((req, _res, next) => next(refuse.unrecognized(req.method, req.path)));

  // Every error becomes `{errcode, error}`: ours, body-parser's (413, 400, 415), the router's.
  app.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    const where = { method: req.method, path: req.path, txnId: res.locals.txnId as string | undefined };
    answerRefusal(res, log, toRefusal(error, maxBodyBytes), where);
  });

  async function query(ask: () => Promise<boolean>): Promise<boolean> {
    try {
      return await ask();
    } catch (error) {
      throw refuse.internal(error);
    }
  }

  return app;
}

/**
 * Listens on `host:port` (port 0 picks a free one). Resolves once listening; rejects when the
 * address is taken or not available.
 */
export function listen(app: Express, options: ListenOptions): Promise<ListeningAppservice> {
  const server = createServer(app);
  server.on("clientError", answerClientError);
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once("error", onError);
    server.listen(options.port, options.host ?? "127.0.0.1", () => {
      server.off("error", onError);
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : options.port;
      resolve({ server, port, close: (deadlineMs) => closeServer(server, deadlineMs ?? 10_000) });
    });
  });
}

/**
 * A request Node's HTTP parser refused before express saw it (a request line or headers over
 * 16 KiB, bytes that are not HTTP): answered `{errcode, error}` like every other refusal, instead
 * of Node's bare status line. Only when nothing of another response is on the wire yet.
 */
function answerClientError(error: Error & { code?: string }, socket: Duplex): void {
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (error.code === "ECONNRESET" || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  const [status, reason, errcode, message] =
    error.code === "HPE_HEADER_OVERFLOW"
      ? [431, "Request Header Fields Too Large", "M_TOO_LARGE", "The request line and headers exceed 16 KiB."]
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "Request Timeout", "M_UNKNOWN", "The request took too long to arrive."]
        : [400, "Bad Request", "M_UNKNOWN", "The request is not valid HTTP."];
  const body = JSON.stringify({ errcode, error: message });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function closeServer(server: Server, deadlineMs: number): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => server.closeAllConnections(), deadlineMs);
    timer.unref();
    server.close((error) => {
      clearTimeout(timer);
      if (error) reject(error);
      else resolve();
    });
    // Keep-alive sockets waiting for a next request would hold `close` open until they time out.
    server.closeIdleConnections();
  });
}

function bodyOf(req: Request): Buffer {
  return Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function countByKind(items: readonly InboundItem[]): JournaledCounts {
  const counts = { events: 0, ephemeral: 0, toDevice: 0, e2ee: 0 };
  for (const item of items) {
    const key =
      item.kind === "event"
        ? "events"
        : item.kind === "deviceLists" || item.kind === "otkCounts"
          ? "e2ee"
          : item.kind;
    counts[key]++;
  }
  return counts;
}

interface HttpishError {
  status?: unknown;
  statusCode?: unknown;
  type?: unknown;
  expose?: unknown;
  message?: unknown;
}

/** Maps anything thrown in the app to a refusal; express's own errors included, never a stack. */
function toRefusal(error: unknown, maxBodyBytes: number): InboundRequestError {
  if (error instanceof InboundRequestError) return error;
  const e = (typeof error === "object" && error !== null ? error : {}) as HttpishError;
  const status =
    typeof e.status === "number" ? e.status : typeof e.statusCode === "number" ? e.statusCode : 500;
  if (e.type === "entity.too.large" || status === 413) return refuse.tooLarge(maxBodyBytes);
  if (status === 400 && typeof e.message === "string" && /decode param/i.test(e.message))
    return refuse.badParam();
  if (status >= 400 && status < 500) {
    const detail = e.expose === true && typeof e.message === "string" ? e.message : "Bad request.";
    return refuse.badRequest(status, detail);
  }
  return refuse.internal(error);
}
