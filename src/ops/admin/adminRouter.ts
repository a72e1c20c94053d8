import express, { type NextFunction, type Request, type Response, type Router } from "express";
import type { Logger } from "pino";
import { answerRefusal } from "../../http/answerRefusal.ts";
import { secretMatches } from "../../http/auth.ts";
import { CourierError, InboundRequestError, ThrottledRequestError } from "../../errors.ts";
import { clientAddress } from "../../http/clientAddress.ts";
import type { FailureThrottle } from "../../http/FailureThrottle.ts";
import type { TxnId } from "../../ids.ts";
import type { Outbox } from "../../outbox/Outbox.ts";
import { readCredentials, requestOrigin, SESSION_COOKIE, type AdminCredentials } from "./adminAuth.ts";
import type { AdminSessions } from "./AdminSessions.ts";
import type { AdminState, InboundPanel } from "./adminState.ts";
import { CONTENT_SECURITY_POLICY, contentSecurityPolicy, dashboardPage, loginPage } from "./dashboardPage.ts";
import { DASHBOARD_SCRIPT } from "./dashboardScript.ts";
import { LOGIN_SCRIPT } from "./loginScript.ts";
import { chatPage } from "./chatPage.ts";
import { CHAT_SCRIPT } from "./chatScript.ts";
import type { DashboardChat } from "./options.ts";

export interface AdminRouterOptions {
  readonly token: string;
  readonly sessions: AdminSessions;
  /** Everything the page shows. Does I/O. */
  readonly state: () => Promise<AdminState>;
  /** The inbound panel alone (totals, rejected and dead items). Does I/O. */
  readonly inbound: () => Promise<InboundPanel>;
  /** Retries and drops go through the outbox, the store's only writer. */
  readonly outbox: Pick<Outbox, "retry" | "drop">;
  /** Failed tokens per client address: after a few, the address waits before it may try again. */
  readonly throttle: FailureThrottle;
  readonly log: Logger;
  /** The chat page (`/chat`); absent: no such page. */
  readonly chat?: DashboardChat;
}

/** Every refusal of the dashboard, defined once: stable code, Matrix errcode, status, message. */
const refuse = {
  missing: () =>
    new InboundRequestError(
      "COURIER_ADMIN_UNAUTHORIZED",
      "M_UNAUTHORIZED",
      401,
      "Missing credentials: send the admin token as 'Authorization: Bearer <token>', or log in at /admin/.",
    ),
  expired: () =>
    new InboundRequestError(
      "COURIER_ADMIN_SESSION_ENDED",
      "M_UNAUTHORIZED",
      401,
      "The session has ended (logged out, expired, or the appservice restarted); log in again.",
    ),
  wrong: () =>
    new InboundRequestError(
      "COURIER_ADMIN_FORBIDDEN",
      "M_FORBIDDEN",
      403,
      "The credentials are not the admin token (admin.token in config.yaml).",
    ),
  crossOrigin: () =>
    new InboundRequestError(
      "COURIER_ADMIN_CROSS_ORIGIN",
      "M_FORBIDDEN",
      403,
      "Refused: a request that changes something must come from the dashboard's own page (its Origin does not match).",
    ),
  notDead: (txnId: string) =>
    new InboundRequestError(
      "COURIER_ADMIN_NOT_DEAD",
      "M_NOT_FOUND",
      404,
      `${txnId} is not a dead letter (unknown, or already retried).`,
    ),
  notDroppable: (txnId: string) =>
    new InboundRequestError(
      "COURIER_ADMIN_NOT_DROPPABLE",
      "M_NOT_FOUND",
      404,
      `${txnId} is neither pending nor dead (unknown, already sent, or already dropped).`,
    ),
  unrecognized: (method: string, path: string) =>
    new InboundRequestError(
      "COURIER_ADMIN_UNRECOGNIZED",
      "M_UNRECOGNIZED",
      404,
      `Unrecognized request: ${method} ${path}`,
    ),
  badRequest: (status: number, detail: string) =>
    new InboundRequestError("COURIER_ADMIN_BAD_REQUEST", "M_UNKNOWN", status, detail),
  internal: (cause: unknown) =>
    new InboundRequestError("COURIER_ADMIN_INTERNAL", "M_UNKNOWN", 500, "Internal error; it was logged.", {
      cause,
    }),
};

const FORM_LIMIT_BYTES = 4096;
/** A batch drop: a few thousand txnIds. */
const JSON_LIMIT_BYTES = 256 * 1024;

/**
 * The operator dashboard as an express Router, to be mounted under `/admin`. Everything but the
 * login form's POST needs credentials: the admin token as `Authorization: Bearer` (scripts) or
 * the session cookie the login form hands out (browsers: HttpOnly, SameSite=Strict). POSTs that
 * ride on the cookie must also come from the dashboard's own origin. Refusals are `{errcode,
 * error}` with 401/403; a browser asking for a page gets the login form with the same status.
 */
export function createAdminRouter(options: AdminRouterOptions): Router {
  const { sessions, throttle, log } = options;
  const router = express.Router({ caseSensitive: true, strict: false });

  router.use((_req, res, next) => {
    res.set({
      "content-security-policy": CONTENT_SECURITY_POLICY,
      "x-content-type-options": "nosniff",
      "x-frame-options": "DENY",
      // Not "no-referrer": with it, browsers send `Origin: null` on same-origin POSTs.
      "referrer-policy": "same-origin",
      "cache-control": "no-store",
    });
    next();
  });

  router.post("/login", express.urlencoded({ extended: false, limit: FORM_LIMIT_BYTES }), (req, res) => {
    if (requestOrigin(req.headers, req.host) === "cross-origin") throw refuse.crossOrigin();
    const body = req.body as Record<string, unknown> | undefined;
    const presented = typeof body?.token === "string" ? body.token : "";
    const action = `${req.baseUrl}/login`;
    if (presented === "") {
      res.status(401).type("html").send(loginPage(action, "Enter the admin token."));
      return;
    }
    const address = clientAddress(req);
    const wait = throttle.waitMs(address);
    if (wait > 0) {
      const refusal = new ThrottledRequestError(wait);
      res.status(429).set("retry-after", String(Math.ceil(wait / 1000)));
      res.type("html").send(loginPage(action, refusal.message));
      return;
    }
    if (!secretMatches(presented, options.token)) {
      throttle.failed(address);
      log.warn({ ip: address }, "dashboard login refused: wrong token");
      res.status(403).type("html").send(loginPage(action, "That is not the admin token."));
      return;
    }
    throttle.succeeded(address);
    const session = sessions.create();
    res.append("set-cookie", sessionCookie(req, session.id, session.maxAgeSeconds));
    log.info({ ip: req.ip }, "dashboard login");
    res.redirect(303, `${req.baseUrl}/`);
  });

  // Holds nothing: the login form needs it before anyone has logged in.
  router.get("/login.js", (_req, res) => {
    res.status(200).type("text/javascript").send(LOGIN_SCRIPT);
  });

  // Everything below needs credentials.
  router.use((req, res, next) => {
    const address = clientAddress(req);
    // A waiting address is refused before its token is compared: guessing learns nothing.
    const wait = req.headers.authorization?.trim() ? throttle.waitMs(address) : 0;
    if (wait > 0) return next(new ThrottledRequestError(wait));
    const credentials = readCredentials(req.headers, options.token, sessions);
    if (credentials.kind === "bearer") throttle.succeeded(address);
    if (credentials.kind === "wrong") throttle.failed(address);
    if (credentials.kind === "bearer" || credentials.kind === "session") {
      res.locals.admin = credentials;
      return next();
    }
    if (credentials.kind === "expired") res.append("set-cookie", sessionCookie(req, "", 0));
    res.set("www-authenticate", 'Bearer realm="courier-admin"');
    next(
      credentials.kind === "wrong"
        ? refuse.wrong()
        : credentials.kind === "expired"
          ? refuse.expired()
          : refuse.missing(),
    );
  });

  // A POST riding on the cookie must come from our own page: SameSite=Strict already keeps
  // other sites' requests cookie-less; this also covers old browsers and same-site neighbours.
  const sameOrigin = (req: Request, res: Response, next: NextFunction) => {
    const credentials = res.locals.admin as AdminCredentials;
    if (credentials.kind === "session" && requestOrigin(req.headers, req.host) !== "same-origin")
      return next(refuse.crossOrigin());
    next();
  };

  router.get("/", (req, res) => {
    // Relative links (app.js, api/state) need the trailing slash.
    if (!req.originalUrl.split("?")[0]!.endsWith("/")) return res.redirect(308, `${req.baseUrl}/`);
    res
      .status(200)
      .type("html")
      .send(dashboardPage({ chat: options.chat !== undefined }));
  });

  const { chat } = options;
  if (chat) {
    router.get("/chat", (_req, res) => {
      // The page calls the homeserver itself: its origin, and nothing else, joins connect-src.
      res.set("content-security-policy", contentSecurityPolicy([new URL(chat.homeserverUrl).origin]));
      res.status(200).type("html").send(chatPage(chat));
    });
    router.get("/chat.js", (_req, res) => {
      res.status(200).type("text/javascript").send(CHAT_SCRIPT);
    });
    router.get("/api/chat", (_req, res) => {
      res.status(200).json({
        homeserverUrl: chat.homeserverUrl,
        userId: chat.userId,
        password: chat.password,
        botUserId: chat.botUserId,
      });
    });
  }

  router.get("/app.js", (_req, res) => {
    res.status(200).type("text/javascript").send(DASHBOARD_SCRIPT);
  });

  router.get("/api/state", async (_req, res) => {
    res.status(200).json(await options.state());
  });

  router.get("/api/inbound", async (_req, res) => {
    res.status(200).json(await options.inbound());
  });

  // Retries and drops, from the dashboard or `courier outbox retry/drop` while the service runs.
  router.post("/api/dead/retry", sameOrigin, async (_req, res) => {
    const requeued = await options.outbox.retry("all-dead");
    log.info({ requeued }, "every dead letter requeued by an operator");
    res.status(200).json({ requeued });
  });

  router.post("/api/dead/:txnId/retry", sameOrigin, async (req, res) => {
    const txnId = req.params.txnId as string;
    const requeued = await options.outbox.retry([txnId as TxnId]);
    if (requeued === 0) throw refuse.notDead(txnId);
    log.info({ txnId }, "dead letter requeued by an operator");
    res.status(200).json({ requeued });
  });

  router.post(
    "/api/pending/drop",
    sameOrigin,
    express.json({ limit: JSON_LIMIT_BYTES }),
    async (req, res) => {
      const txnIds = (req.body as { txnIds?: unknown } | undefined)?.txnIds;
      if (!Array.isArray(txnIds) || !txnIds.every((id) => typeof id === "string" && id !== ""))
        throw refuse.badRequest(400, 'Expected a JSON body {"txnIds": ["…", …]}.');
      const dropped = await options.outbox.drop(txnIds as TxnId[]);
      log.info({ txnIds, dropped }, "requests dropped by an operator");
      res.status(200).json({ dropped });
    },
  );

  router.post("/api/pending/:txnId/drop", sameOrigin, async (req, res) => {
    const txnId = req.params.txnId as string;
    const dropped = await options.outbox.drop([txnId as TxnId]);
    if (dropped === 0) throw refuse.notDroppable(txnId);
    log.info({ txnId }, "request dropped by an operator");
    res.status(200).json({ dropped });
  });

  router.post("/logout", sameOrigin, (req, res) => {
    const credentials = res.locals.admin as AdminCredentials;
    if (credentials.kind === "session") sessions.revoke(credentials.id);
    res.append("set-cookie", sessionCookie(req, "", 0));
    log.info("dashboard logout");
    res.redirect(303, `${req.baseUrl}/`);
  });

  router.use((req, _res, next) => next(refuse.unrecognized(req.method, req.originalUrl.split("?")[0]!)));

  router.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    const refusal = toRefusal(error);
    const where = { method: req.method, path: req.originalUrl.split("?")[0] };
    // A browser navigating to a page without a session gets the login form, with the same status.
    const wantsPage = req.method === "GET" && req.accepts(["json", "html"]) === "html";
    if (wantsPage && !res.headersSent && (refusal.status === 401 || refusal.status === 403)) {
      log.debug({ ...where, status: refusal.status, errcode: refusal.errcode }, refusal.message);
      const message = refusal.code === "COURIER_ADMIN_UNAUTHORIZED" ? undefined : refusal.message;
      res
        .status(refusal.status)
        .type("html")
        .send(loginPage(`${req.baseUrl}/login`, message));
      return;
    }
    answerRefusal(res, log, refusal, where);
  });

  return router;
}

/**
 * The session cookie; an empty id with max-age 0 deletes it. Secure when the page came over
 * HTTPS: `req.secure` believes `X-Forwarded-Proto` only from a trusted proxy.
 */
function sessionCookie(req: Request, id: string, maxAgeSeconds: number): string {
  return [
    `${SESSION_COOKIE}=${id}`,
    `Path=${req.baseUrl || "/"}`,
    `Max-Age=${maxAgeSeconds}`,
    "HttpOnly",
    "SameSite=Strict",
    ...(req.secure ? ["Secure"] : []),
  ].join("; ");
}

interface HttpishError {
  status?: unknown;
  type?: unknown;
  expose?: unknown;
  message?: unknown;
}

function toRefusal(error: unknown): CourierError {
  if (error instanceof CourierError) return error;
  const e = (typeof error === "object" && error !== null ? error : {}) as HttpishError;
  if (typeof e.status === "number" && e.status >= 400 && e.status < 500) {
    const detail = e.expose === true && typeof e.message === "string" ? e.message : "Bad request.";
    return refuse.badRequest(e.status, detail);
  }
  return refuse.internal(error);
}
