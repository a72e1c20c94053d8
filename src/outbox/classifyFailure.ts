import { MatrixError, MatrixNetworkError } from "../matrix/MatrixError.ts";

/**
 * What to do after a request failed:
 * - `rateLimited`: pause the sender's bucket for `retryAfterMs` (or a backoff when absent), retry.
 * - `retry`: transient (network, timeout, 5xx, unknown token while the homeserver loads our
 *   registration); retry the same request after a backoff.
 * - `dead`: the homeserver will never accept this request; dead-letter it and move the lane on.
 */
export type FailureClass =
  | { readonly action: "rateLimited"; readonly retryAfterMs: number | undefined; readonly reason: string }
  | { readonly action: "retry"; readonly reason: string }
  | { readonly action: "dead"; readonly errcode: string; readonly status: number; readonly reason: string };

// Errors caused by our credentials or the homeserver's state, not by the request: retrying cannot
// make things worse, and dead-lettering would drop every queued message on a config slip.
const RETRYABLE_ERRCODES = new Set(["M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_LIMIT_EXCEEDED"]);

export function classifyFailure(error: unknown): FailureClass {
  if (error instanceof MatrixError) {
    if (error.status === 429 || error.errcode === "M_LIMIT_EXCEEDED") {
      return { action: "rateLimited", retryAfterMs: error.retryAfterMs, reason: error.message };
    }
    if (error.status >= 500 || error.status === 408 || RETRYABLE_ERRCODES.has(error.errcode)) {
      return { action: "retry", reason: error.message };
    }
    return { action: "dead", errcode: error.errcode, status: error.status, reason: error.message };
  }
  if (error instanceof MatrixNetworkError)
    return { action: "retry", reason: `${error.code}: ${error.message}` };
  // Anything else is a bug on our side or in the HTTP stack; keep the request and retry.
  return { action: "retry", reason: error instanceof Error ? error.message : String(error) };
}

/** Retry timing. */
export interface RetryOptions {
  /** First delay. @default 250 */
  readonly baseMs: number;
  /** Longest delay between two attempts. @default 60000 */
  readonly capMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { baseMs: 250, capMs: 60_000 };

/**
 * Exponential backoff with "equal jitter": half the delay is fixed, half random, so retries of
 * many lanes spread out but none comes back too early. `attempt` counts from 1.
 */
export function backoffDelay(
  attempt: number,
  options: RetryOptions,
  random: () => number = Math.random,
): number {
  const exp = Math.min(options.capMs, options.baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(exp / 2 + random() * (exp / 2));
}
