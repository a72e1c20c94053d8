import { TokenBucket } from "../../../src/outbox/TokenBucket.ts";

describe("TokenBucket", () => {
  test("lets a burst through, then paces at the rate", () => {
    const bucket = new TokenBucket({ perSecond: 10, burst: 3 }, 0);
    expect([bucket.take(0), bucket.take(0), bucket.take(0)]).toEqual([0, 0, 0]);
    expect(bucket.take(0)).toBe(100);
    expect(bucket.take(50)).toBe(50);
    expect(bucket.take(100)).toBe(0);
    expect(bucket.take(100)).toBe(100);
  });

  test("refills up to the burst only", () => {
    const bucket = new TokenBucket({ perSecond: 10, burst: 2 }, 0);
    bucket.take(0);
    bucket.take(0);
    expect(bucket.isIdle(10_000)).toBe(true);
    expect([bucket.take(10_000), bucket.take(10_000), bucket.take(10_000)]).toEqual([0, 0, 100]);
  });

  test("pause holds everything until it ends, then restarts empty", () => {
    const bucket = new TokenBucket({ perSecond: 100, burst: 100 }, 0);
    bucket.pause(2000, 0);
    expect(bucket.take(0)).toBe(2000);
    expect(bucket.take(1500)).toBe(500);
    expect(bucket.take(2000)).toBe(10);
    expect(bucket.take(2010)).toBe(0);
  });

  test("a shorter pause does not cut a longer one", () => {
    const bucket = new TokenBucket({ perSecond: 1, burst: 1 }, 0);
    bucket.pause(5000, 0);
    bucket.pause(100, 0);
    expect(bucket.take(1000)).toBe(4000);
  });

  test("rejects nonsense", () => {
    expect(() => new TokenBucket({ perSecond: 0, burst: 1 }, 0)).toThrow(/perSecond/);
    expect(() => new TokenBucket({ perSecond: 1, burst: 0 }, 0)).toThrow(/burst/);
  });
});
