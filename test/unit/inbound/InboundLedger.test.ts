import { jest } from "@jest/globals";
import { pino } from "pino";
import { InboundLedger } from "../../../src/inbound/InboundLedger.ts";
import type { InboundJournal, InboundRecordBatch } from "../../../src/inbound/InboundJournal.ts";

const silent = pino({ level: "silent" });
const turn = () => new Promise((resolve) => setImmediate(resolve));

/** A journal whose `record` fails while `failing` is set, and keeps the batches it committed. */
function recorder() {
  const committed: InboundRecordBatch[] = [];
  const state = { failing: false, calls: 0 };
  const journal = {
    record: (batch: InboundRecordBatch) => {
      state.calls++;
      if (state.failing) return Promise.reject(new Error("disk I/O error"));
      committed.push(batch);
      return Promise.resolve();
    },
  } as unknown as InboundJournal;
  return { journal, committed, state };
}

const settledSeqs = (batches: InboundRecordBatch[]) => batches.flatMap((b) => b.settled.map((s) => s.seq));

describe("InboundLedger", () => {
  test("what is asked in one turn is one commit", async () => {
    const { journal, committed } = recorder();
    const ledger = new InboundLedger(journal, silent);
    await Promise.all([
      ledger.begin(7),
      ledger.settle({ seq: 1, state: "done" }),
      ledger.settle({ seq: 2, state: "done" }),
    ]);
    expect(committed).toEqual([
      {
        begun: [7],
        settled: [
          { seq: 1, state: "done" },
          { seq: 2, state: "done" },
        ],
      },
    ]);
  });

  test("outcomes that failed to commit go first into the next commit: none is committed before an earlier one", async () => {
    jest.useFakeTimers({ doNotFake: ["setImmediate", "nextTick", "queueMicrotask"] });
    try {
      const { journal, committed, state } = recorder();
      const ledger = new InboundLedger(journal, silent);
      const done: number[] = [];
      const settle = (seq: number) => void ledger.settle({ seq, state: "done" }).then(() => done.push(seq));
      state.failing = true;
      settle(1);
      settle(2);
      const begun = ledger.begin(9);
      await expect(begun).rejects.toThrow("disk I/O error"); // a begun dispatch is asked again by its caller
      state.failing = false;
      settle(3); // reached while 1 and 2 wait for their retry: it waits with them
      await turn();
      expect(committed).toEqual([]);
      expect(done).toEqual([]);
      await jest.advanceTimersByTimeAsync(1_000);
      expect(settledSeqs(committed)).toEqual([1, 2, 3]);
      expect(done).toEqual([1, 2, 3]);
    } finally {
      jest.useRealTimers();
    }
  });

  test("stop() tries the outcomes left once more, then lets them go (they stay pending in the journal)", async () => {
    const { journal, committed, state } = recorder();
    const ledger = new InboundLedger(journal, silent);
    state.failing = true;
    void ledger.settle({ seq: 1, state: "done" });
    await turn();
    const calls = state.calls;
    await ledger.stop();
    expect(state.calls).toBe(calls + 1);
    state.failing = false;
    ledger.start();
    await ledger.settle({ seq: 2, state: "done" });
    expect(settledSeqs(committed)).toEqual([2]);
  });
});
