import { createHmac } from "node:crypto";
import { secretMatches, verifyBearer, type AuthResult } from "../http/auth.ts";
import type { WebhookScheme } from "./definePlugin.ts";

export { verifyBearer };

/** How a request's credentials compare to the route's secret. */
export type WebhookAuthResult = AuthResult;

/**
 * Checks GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` in constant
 * time. The hex digits may be in either case. Pure, no I/O.
 */
export function verifyHubSignature(
  header: string | undefined,
  rawBody: Buffer,
  secret: string,
): WebhookAuthResult {
  if (header === undefined || header.trim() === "") return "missing";
  const expected = `sha256=${createHmac("sha256", secret).update(rawBody).digest("hex")}`;
  return secretMatches(header.trim().toLowerCase(), expected) ? "ok" : "wrong";
}

/** `sha256=<hex>`: what a sender puts in `X-Hub-Signature-256` for this body (tests, clients). */
export function hubSignature(rawBody: Buffer | string, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(rawBody).digest("hex")}`;
}

/** Dispatches on the scheme: bearer reads `authorization`, hmac-sha256 `x-hub-signature-256`. */
export function verifyWebhook(
  scheme: WebhookScheme,
  secret: string,
  headers: Readonly<Record<string, string>>,
  rawBody: Buffer,
): WebhookAuthResult {
  return scheme === "bearer"
    ? verifyBearer(headers.authorization, secret)
    : verifyHubSignature(headers["x-hub-signature-256"], rawBody, secret);
}

/** Headers that carry a sender's own delivery id, first found wins. */
export const DELIVERY_ID_HEADERS = ["x-github-delivery", "idempotency-key"] as const;

const DELIVERY_ID = /^[\x21-\x7e]{1,200}$/;

/**
 * The sender's delivery id from the headers (`X-GitHub-Delivery`, then `Idempotency-Key`):
 * undefined when none is sent; `null` when one is sent but is not 1–200 visible ASCII characters.
 */
export function deliveryIdFromHeaders(headers: Readonly<Record<string, string>>): string | null | undefined {
  for (const name of DELIVERY_ID_HEADERS) {
    const value = headers[name]?.trim();
    if (value === undefined || value === "") continue;
    return DELIVERY_ID.test(value) ? value : null;
  }
  return undefined;
}

/** True when `value` may be used as a delivery id (1–200 visible ASCII characters). */
export function isValidDeliveryId(value: string): boolean {
  return DELIVERY_ID.test(value);
}
