// Outcomes the store could not record: kept, kept out of reloaded lanes, and committed later.
import { jest } from "@jest/globals";
import { pino } from "pino";
import { Settlements } from "../../../src/outbox/Settlements.ts";
import type { OutboxRow, Settlement } from "../../../src/store/OutboxStore.ts";
import type { TxnId } from "../../../src/ids.ts";

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

/** A store whose `settle` fails while `down`, and records what it committed. */
const flakyStore = () => {
  const store = {
    down: true,
    committed: [] as string[],
    settle: async (batch: readonly Settlement[]) => {
      if (store.down) throw new Error("disk full");
      store.committed.push(...batch.map((s) => s.txnId));
    },
  };
  return store;
};
const outcome = (txnId: string): Settlement => ({
  seq: 1,
  txnId: txnId as TxnId,
  lane: "room:!r",
  state: "sent",
  eventId: "$e",
  attempts: 1,
});
const row = (txnId: string) => ({ txnId }) as OutboxRow;
const settle = () => jest.advanceTimersByTimeAsync(0);

test("an outcome the store refused keeps its row out of a reloaded lane until it is committed", async () => {
  const store = flakyStore();
  const settlements = new Settlements(store, pino({ level: "silent" }), () => 0);
  settlements.record(outcome("t1"));
  await settle();
  expect(settlements.pendingOf([row("t1"), row("t2")]).map((r) => r.txnId)).toEqual(["t2"]);

  // First retry (≥ 500 ms) fails again; the next one, after the store is back, commits.
  await jest.advanceTimersByTimeAsync(500);
  expect(store.committed).toEqual([]);
  store.down = false;
  await jest.advanceTimersByTimeAsync(1_000);
  expect(store.committed).toEqual(["t1"]);
  expect(settlements.pendingOf([row("t1")]).map((r) => r.txnId)).toEqual(["t1"]);
});

test("once stopped, no retry is scheduled; commitLast tries once and forgets", async () => {
  const store = flakyStore();
  const settlements = new Settlements(store, pino({ level: "silent" }), () => 0);
  settlements.stop();
  settlements.record(outcome("t1"));
  await settle();
  expect(jest.getTimerCount()).toBe(0);
  await settlements.commitLast();
  expect(store.committed).toEqual([]);
  expect(settlements.pendingOf([row("t1")])).toHaveLength(1);

  settlements.record(outcome("t2"));
  await settle();
  store.down = false;
  await settlements.commitLast();
  expect(store.committed).toEqual(["t2"]);
});
