import { MatrixError, MatrixNetworkError } from "../../../src/matrix/MatrixError.ts";
import { backoffDelay, classifyFailure, DEFAULT_RETRY } from "../../../src/outbox/classifyFailure.ts";

const err = (status: number, errcode?: string, extra: object = {}, header?: string) =>
  new MatrixError(status, errcode ? { errcode, error: "x", ...extra } : "not json", header);

describe("classifyFailure", () => {
  test.each([
    [err(403, "M_FORBIDDEN"), "dead"],
    [err(413, "M_TOO_LARGE"), "dead"],
    [err(400, "M_BAD_JSON"), "dead"],
    [err(404, "M_NOT_FOUND"), "dead"],
    [err(400, "M_DUPLICATE_ANNOTATION"), "dead"],
    [err(400, "M_UNKNOWN"), "dead"],
    [err(500, "M_UNKNOWN"), "retry"],
    [err(502), "retry"],
    [err(503), "retry"],
    [err(504), "retry"],
    [err(408), "retry"],
    [err(401, "M_UNKNOWN_TOKEN"), "retry"],
    [err(429, "M_LIMIT_EXCEEDED", { retry_after_ms: 1500 }), "rateLimited"],
    [err(400, "M_LIMIT_EXCEEDED"), "rateLimited"],
    [new MatrixNetworkError("reset", "ECONNRESET"), "retry"],
    [new MatrixNetworkError("timed out", "ETIMEDOUT"), "retry"],
    [new Error("surprise"), "retry"],
  ])("%s → %s", (error, action) => {
    expect(classifyFailure(error).action).toBe(action);
  });

  test("429 carries retry_after_ms, or the Retry-After header", () => {
    expect(classifyFailure(err(429, "M_LIMIT_EXCEEDED", { retry_after_ms: 1500 }))).toMatchObject({
      retryAfterMs: 1500,
    });
    expect(classifyFailure(err(429, "M_LIMIT_EXCEEDED", {}, "3"))).toMatchObject({ retryAfterMs: 3000 });
    expect(classifyFailure(err(429, "M_LIMIT_EXCEEDED"))).toMatchObject({ retryAfterMs: undefined });
  });

  test("dead carries errcode and status", () => {
    expect(classifyFailure(err(403, "M_FORBIDDEN"))).toMatchObject({
      action: "dead",
      errcode: "M_FORBIDDEN",
      status: 403,
    });
  });
});

describe("backoffDelay", () => {
  test("grows exponentially between half and all of the step, up to the cap", () => {
    const opts = { baseMs: 100, capMs: 5000 };
    expect(backoffDelay(1, opts, () => 0)).toBe(50);
    expect(backoffDelay(1, opts, () => 1)).toBe(100);
    expect(backoffDelay(4, opts, () => 0)).toBe(400);
    expect(backoffDelay(4, opts, () => 1)).toBe(800);
    expect(backoffDelay(30, opts, () => 1)).toBe(5000);
    expect(backoffDelay(1000, opts, () => 0.5)).toBe(3750);
  });

  test("defaults cap at a minute", () => {
    expect(backoffDelay(100, DEFAULT_RETRY, () => 1)).toBe(60_000);
  });
});
