import type { Response } from "express";
import type { Logger } from "pino";
import { ThrottledRequestError, type InboundRequestError } from "../errors.ts";

/**
 * Answers a refused request as Matrix does, `{errcode, error}` (plus `extra` fields), and logs
 * it: as an error when the fault is ours (5xx, with its cause), at debug level otherwise. A
 * throttled request also gets `retry_after_ms` and `Retry-After`. When an answer has begun
 * already, the connection is cut instead.
 */
export function answerRefusal(
  res: Response,
  log: Logger,
  refusal: InboundRequestError,
  where: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): void {
  if (refusal.status >= 500) log.error({ err: refusal.cause ?? refusal, ...where }, refusal.message);
  else log.debug({ ...where, status: refusal.status, errcode: refusal.errcode }, refusal.message);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (refusal instanceof ThrottledRequestError) {
    res.set("retry-after", String(Math.ceil(refusal.retryAfterMs / 1000)));
    extra = { retry_after_ms: refusal.retryAfterMs, ...extra };
  }
  res.status(refusal.status).json({ errcode: refusal.errcode, error: refusal.message, ...extra });
}
