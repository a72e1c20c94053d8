import { randomUUID } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import express, { type NextFunction, type Request, type Response, type Router } from "express";
import type { Logger } from "pino";
import { CourierError, InboundRequestError } from "../errors.ts";
import type { WebhookMethod, WebhookRequest, WebhookScheme } from "./definePlugin.ts";
import { answerRefusal } from "../http/answerRefusal.ts";
import { deliveryIdFromHeaders, isValidDeliveryId, verifyWebhook } from "./webhookAuth.ts";

/** Largest webhook body, in bytes (1 MiB). */
export const WEBHOOK_MAX_BODY_BYTES = 1024 * 1024;

/** One registered webhook of a plugin, checked at registration. */
export interface WebhookRoute {
  readonly method: WebhookMethod;
  readonly path: string;
  readonly secret: string;
  readonly scheme: WebhookScheme;
  readonly deliveryId: ((request: WebhookRequest) => string | undefined) | undefined;
  /** How long a signed body is remembered (`hmac-sha256` routes), in ms. */
  readonly replayWindowMs: number;
}

export interface WebhookRouterOptions<R extends WebhookRoute> {
  readonly routes: readonly R[];
  readonly log: Logger;
  /** False when the plugin is disabled or the framework stops: requests are answered 503. */
  readonly accepting: () => boolean;
  /**
   * Runs the handler; resolves once its sends are journaled, rejects when it fails or times out.
   * May resolve with another delivery id to answer: the one this request repeats (a replayed
   * signed body), whose handler is not run again.
   */
  readonly run: (route: R, request: WebhookRequest, deliveryId: string) => Promise<string | void>;
}

/** Every refusal of a webhook, defined once: stable code, Matrix errcode, status, message. */
const refuse = {
  missing: (scheme: WebhookScheme) =>
    new InboundRequestError(
      "COURIER_WEBHOOK_UNAUTHORIZED",
      "M_UNAUTHORIZED",
      401,
      scheme === "bearer"
        ? "Missing credentials: send the webhook's secret as 'Authorization: Bearer <secret>'."
        : "Missing signature: send 'X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body with the secret>'.",
    ),
  wrong: (scheme: WebhookScheme) =>
    new InboundRequestError(
      "COURIER_WEBHOOK_FORBIDDEN",
      "M_FORBIDDEN",
      403,
      scheme === "bearer"
        ? "The bearer token is not this webhook's secret."
        : "The X-Hub-Signature-256 signature does not match the body and this webhook's secret.",
    ),
  notJson: (detail: string) =>
    new InboundRequestError(
      "COURIER_WEBHOOK_NOT_JSON",
      "M_NOT_JSON",
      400,
      `The body is not valid JSON: ${detail}`,
    ),
  badDeliveryId: () =>
    new InboundRequestError(
      "COURIER_WEBHOOK_BAD_DELIVERY_ID",
      "M_INVALID_PARAM",
      400,
      "The X-GitHub-Delivery / Idempotency-Key header must be 1–200 visible ASCII characters.",
    ),
  tooLarge: () =>
    new InboundRequestError(
      "COURIER_WEBHOOK_TOO_LARGE",
      "M_TOO_LARGE",
      413,
      `The body is larger than ${WEBHOOK_MAX_BODY_BYTES} bytes.`,
    ),
  unavailable: () =>
    new InboundRequestError(
      "COURIER_WEBHOOK_UNAVAILABLE",
      "M_UNKNOWN",
      503,
      "The plugin of this webhook is not running (disabled, or the appservice is stopping); retry later.",
    ),
  failed: (cause: unknown) =>
    new InboundRequestError(
      "COURIER_WEBHOOK_FAILED",
      "M_UNKNOWN",
      500,
      "The webhook's handler failed; it was logged. Send the same delivery again (same delivery id): what was already sent is not sent twice.",
      { cause },
    ),
  badRequest: (status: number, detail: string) =>
    new InboundRequestError("COURIER_WEBHOOK_BAD_REQUEST", "M_UNKNOWN", status, detail),
};

const JSON_TYPE = /^application\/(?:[\w.+-]*\+)?json\s*(?:;|$)/i;

/**
 * An express Router serving one plugin's webhooks (mount it under `/plugins/<name>`). Per
 * request: check the method's credentials (bearer before reading the body, HMAC over the raw
 * body), read up to 1 MiB, parse JSON, pick the delivery id, run the handler, answer
 * 202 `{delivery_id}` once it resolves (the first delivery's id when `run` says the request
 * repeats one) or 500 `{errcode, error, delivery_id}` when it fails.
 * Every answer is JSON.
 */
export function createWebhookRouter<R extends WebhookRoute>(options: WebhookRouterOptions<R>): Router {
  const router = express.Router({ caseSensitive: true, strict: false });
  const raw = express.raw({ type: () => true, limit: WEBHOOK_MAX_BODY_BYTES });

  for (const route of options.routes) {
    const guard = (_req: Request, _res: Response, next: NextFunction) =>
      next(options.accepting() ? undefined : refuse.unavailable());
    // A bearer token is checked before the body is read: a stranger cannot make us buffer 1 MiB.
    const bearer = (req: Request, _res: Response, next: NextFunction) => {
      if (route.scheme !== "bearer") return next();
      const result = verifyWebhook("bearer", route.secret, flatten(req.headers), Buffer.alloc(0));
      next(
        result === "ok"
          ? undefined
          : result === "missing"
            ? refuse.missing("bearer")
            : refuse.wrong("bearer"),
      );
    };
    const handle = async (req: Request, res: Response) => {
      const headers = flatten(req.headers);
      const rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      if (route.scheme === "hmac-sha256") {
        const result = verifyWebhook("hmac-sha256", route.secret, headers, rawBody);
        if (result !== "ok")
          throw result === "missing" ? refuse.missing(route.scheme) : refuse.wrong(route.scheme);
      }
      const request: WebhookRequest = {
        method: route.method,
        path: route.path,
        headers,
        body: parseBody(headers["content-type"], rawBody),
        rawBody,
      };
      const fromHeaders = deliveryIdFromHeaders(headers);
      if (fromHeaders === null) throw refuse.badDeliveryId();
      const custom = fromHeaders ?? route.deliveryId?.(request);
      if (custom !== undefined && !isValidDeliveryId(custom)) throw refuse.badDeliveryId();
      // No id from the sender: one given now, on arrival. A retry of this request cannot be told
      // from a new one then, unless the sender resends it with `Idempotency-Key: <delivery_id>`.
      const deliveryId = custom ?? randomUUID();
      res.locals.deliveryId = deliveryId;
      let answered: string;
      try {
        answered = (await options.run(route, request, deliveryId)) ?? deliveryId;
      } catch (error) {
        if (error instanceof CourierError && error.status >= 400 && error.status < 500) throw error;
        throw refuse.failed(error);
      }
      res.status(202).json({ delivery_id: answered });
    };
    const path = route.path;
    const method = route.method.toLowerCase() as "get" | "post" | "put" | "patch" | "delete";
    router[method](path, guard, bearer, raw, handle);
  }

  router.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    const refusal = toRefusal(error);
    const deliveryId = res.locals.deliveryId as string | undefined;
    const where = { method: req.method, path: req.originalUrl.split("?")[0], deliveryId };
    answerRefusal(
      res,
      options.log,
      refusal,
      where,
      deliveryId === undefined ? {} : { delivery_id: deliveryId },
    );
  });
  return router;
}

function flatten(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

function parseBody(contentType: string | undefined, rawBody: Buffer): unknown {
  if (rawBody.length === 0) return undefined;
  const text = rawBody.toString("utf8");
  if (contentType === undefined || !JSON_TYPE.test(contentType)) return text;
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw refuse.notJson((error as Error).message);
  }
}

interface HttpishError {
  status?: unknown;
  type?: unknown;
  message?: unknown;
}

function toRefusal(error: unknown): CourierError {
  if (error instanceof CourierError) return error;
  const e = (typeof error === "object" && error !== null ? error : {}) as HttpishError;
  if (e.type === "entity.too.large") return refuse.tooLarge();
  if (typeof e.status === "number" && e.status >= 400 && e.status < 500) {
    return refuse.badRequest(e.status, typeof e.message === "string" ? e.message : "Bad request.");
  }
  return refuse.failed(error);
}
