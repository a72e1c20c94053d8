import { PendingByLane } from "../../../src/store/sqlite/PendingByLane.ts";

describe("PendingByLane", () => {
  test("lists a lane's seqs after a point, in order, apart from other lanes", () => {
    const pending = new PendingByLane();
    pending.set(1, [1, 3, 5]);
    pending.set(2, [2]);
    pending.add(1, 8);
    expect(pending.after(1, 0, 10)).toEqual([1, 3, 5, 8]);
    expect(pending.after(1, 3, 2)).toEqual([5, 8]);
    expect(pending.after(1, 4, 10)).toEqual([5, 8]);
    expect(pending.after(2, 0, 10)).toEqual([2]);
    expect(pending.after(3, 0, 10)).toEqual([]);
  });

  test("settling the head, a row in the middle, or one it never had", () => {
    const pending = new PendingByLane();
    pending.set(7, [1, 2, 3, 4]);
    pending.remove(7, 1);
    pending.remove(7, 3);
    pending.remove(7, 99);
    pending.remove(8, 2);
    expect(pending.after(7, 0, 10)).toEqual([2, 4]);
    pending.remove(7, 2);
    pending.remove(7, 4);
    expect(pending.after(7, 0, 10)).toEqual([]);
    pending.add(7, 5);
    expect(pending.after(7, 0, 10)).toEqual([5]);
  });

  test("a long lane settled from the front stays right as its array is trimmed", () => {
    const pending = new PendingByLane();
    for (let seq = 1; seq <= 5000; seq++) pending.add(1, seq);
    for (let seq = 1; seq <= 4000; seq++) {
      pending.remove(1, seq);
      if (seq % 997 === 0) expect(pending.after(1, 0, 2)).toEqual([seq + 1, seq + 2]);
    }
    expect(pending.after(1, 4500, 3)).toEqual([4501, 4502, 4503]);
    expect(pending.after(1, 0, 10_000)).toHaveLength(1000);
  });
});
