/**
 * An error answer from the homeserver: HTTP status plus the Matrix `errcode` and `error` text.
 * `retryAfterMs` comes from `retry_after_ms` in the body or, failing that, the `Retry-After`
 * header (seconds or an HTTP date).
 */
export class MatrixError extends Error {
  override readonly name = "MatrixError";
  readonly status: number;
  readonly errcode: string;
  readonly retryAfterMs: number | undefined;
  readonly body: unknown;

  constructor(status: number, body: unknown, retryAfterHeader?: string | null, now = Date.now()) {
    const fields = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
    const errcode = typeof fields.errcode === "string" ? fields.errcode : `HTTP_${status}`;
    const text = typeof fields.error === "string" ? fields.error : "";
    super(`${status} ${errcode}${text ? `: ${text}` : ""}`);
    this.status = status;
    this.errcode = errcode;
    this.body = body;
    this.retryAfterMs = retryAfterFrom(fields.retry_after_ms, retryAfterHeader, now);
  }
}

/**
 * The request never got an HTTP answer: connection refused or reset, DNS, timeout. The request
 * may or may not have been processed by the homeserver, so it is always safe to retry only
 * because the retried request carries the same transaction id.
 */
export class MatrixNetworkError extends Error {
  override readonly name = "MatrixNetworkError";
  readonly code: string;
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

function retryAfterFrom(
  bodyValue: unknown,
  header: string | null | undefined,
  now: number,
): number | undefined {
  if (typeof bodyValue === "number" && Number.isFinite(bodyValue) && bodyValue >= 0) return bodyValue;
  if (!header) return undefined;
  const trimmed = header.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
