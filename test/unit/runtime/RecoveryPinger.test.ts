import { jest } from "@jest/globals";
import { RecoveryPinger } from "../../../src/runtime/RecoveryPinger.ts";

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

/** Lets the ping's promise chain settle between timer steps. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

test("pings 2 s after a refusal, then backs off doubling to the cap, until a transaction is journaled", async () => {
  const at: number[] = [];
  const start = Date.now();
  const pinger = new RecoveryPinger({
    ping: async () => {
      at.push(Date.now() - start);
    },
    baseMs: 2_000,
    capMs: 10_000,
  });
  pinger.refused();
  pinger.refused(); // a second refusal while waiting changes nothing
  for (let i = 0; i < 6; i++) {
    await jest.advanceTimersByTimeAsync(10_000);
    await settle();
  }
  // 2, +4, +8, then +10 (capped) each
  expect(at.slice(0, 5)).toEqual([2_000, 6_000, 14_000, 24_000, 34_000]);
  expect(pinger.journaled()).toBe(true);
  const before = at.length;
  await jest.advanceTimersByTimeAsync(60_000);
  expect(at).toHaveLength(before);
  expect(pinger.journaled()).toBe(false);
});

test("a failing ping keeps the backoff going; stop() ends it for good", async () => {
  let pings = 0;
  const pinger = new RecoveryPinger({
    ping: async () => {
      pings++;
      throw new Error("homeserver down");
    },
  });
  pinger.refused();
  await jest.advanceTimersByTimeAsync(2_000);
  await settle();
  await jest.advanceTimersByTimeAsync(4_000);
  await settle();
  expect(pings).toBe(2);
  pinger.stop();
  pinger.refused();
  await jest.advanceTimersByTimeAsync(120_000);
  expect(pings).toBe(2);
});
