import { createHash } from "node:crypto";

/** How long an HMAC route remembers a signed body it ran, by default: a day. */
export const WEBHOOK_REPLAY_WINDOW_MS = 24 * 60 * 60 * 1000;

/**
 * The replay window of an HMAC route: `option` (WebhookOptions.replayWindowMs), else the plugin
 * config's `replayWindowMs`, else a day. A string saying what is wrong when the one given is not
 * a positive number of milliseconds.
 */
export function replayWindowMs(option: unknown, config: unknown): number | string {
  const fromConfig =
    typeof config === "object" && config !== null
      ? (config as { replayWindowMs?: unknown }).replayWindowMs
      : undefined;
  const value = option ?? fromConfig ?? WEBHOOK_REPLAY_WINDOW_MS;
  return typeof value === "number" && Number.isFinite(value) && value > 0
    ? value
    : `replayWindowMs must be a positive number of milliseconds, got ${JSON.stringify(value)}`;
}

/**
 * What an HMAC route remembers of a signed body: the SHA-256 (hex) of the exact bytes the
 * signature covers. The delivery id is not part of it: GitHub does not sign its
 * `X-GitHub-Delivery` header, so anyone who captured a request can change it.
 */
export function signedBodyHash(rawBody: Buffer): string {
  return createHash("sha256").update(rawBody).digest("hex");
}
