import { FailureThrottle } from "../../../src/http/FailureThrottle.ts";

function clocked(options: ConstructorParameters<typeof FailureThrottle>[0] = {}) {
  let now = 1_000_000;
  const throttled: Array<[string, number, number]> = [];
  const throttle = new FailureThrottle({
    now: () => now,
    onThrottled: (...args) => throttled.push(args),
    ...options,
  });
  return { throttle, throttled, advance: (ms: number) => (now += ms) };
}

describe("FailureThrottle", () => {
  test("5 failures are answered; then the address waits 1 s, doubling per failure up to 60 s", () => {
    const { throttle, advance } = clocked();
    const waits: number[] = [];
    for (let i = 0; i < 12; i++) {
      throttle.failed("10.0.0.1");
      waits.push(throttle.waitMs("10.0.0.1"));
      advance(throttle.waitMs("10.0.0.1"));
    }
    expect(waits).toEqual([0, 0, 0, 0, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
  });

  test("the wait runs down with the clock; other addresses are not affected", () => {
    const { throttle, advance } = clocked();
    for (let i = 0; i < 5; i++) throttle.failed("a");
    expect(throttle.waitMs("a")).toBe(1000);
    expect(throttle.waitMs("b")).toBe(0);
    advance(400);
    expect(throttle.waitMs("a")).toBe(600);
    advance(600);
    expect(throttle.waitMs("a")).toBe(0);
  });

  test("a success forgets the address; so does a quiet period of twice the longest wait", () => {
    const { throttle, advance } = clocked();
    for (let i = 0; i < 5; i++) throttle.failed("a");
    throttle.succeeded("a");
    expect(throttle.waitMs("a")).toBe(0);
    throttle.failed("a");
    expect(throttle.waitMs("a")).toBe(0);

    for (let i = 0; i < 5; i++) throttle.failed("b");
    advance(120_001);
    throttle.failed("b");
    expect(throttle.waitMs("b")).toBe(0); // counted afresh: one failure
  });

  test("reported once per run of failures, not on each", () => {
    const { throttle, throttled, advance } = clocked();
    for (let i = 0; i < 9; i++) {
      throttle.failed("a");
      advance(throttle.waitMs("a"));
    }
    expect(throttled).toEqual([["a", 5, 1000]]);
    throttle.succeeded("a");
    for (let i = 0; i < 5; i++) throttle.failed("a");
    expect(throttled).toHaveLength(2);
  });

  test("remembers at most maxAddresses: the stalest is forgotten first", () => {
    const { throttle } = clocked({ maxAddresses: 3, failuresBeforeWait: 1 });
    for (const address of ["a", "b", "c", "d"]) throttle.failed(address);
    expect(["a", "b", "c", "d"].map((a) => throttle.waitMs(a) > 0)).toEqual([false, true, true, true]);
  });
});
