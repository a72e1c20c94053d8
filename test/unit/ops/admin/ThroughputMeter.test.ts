import { ThroughputMeter } from "../../../../src/ops/admin/ThroughputMeter.ts";

const MINUTE = 60_000;

describe("ThroughputMeter", () => {
  test("counts per wall-clock minute, oldest first, the current minute last", () => {
    let now = 100 * MINUTE + 5_000;
    const meter = new ThroughputMeter({ minutes: 5, now: () => now });
    meter.sent();
    meter.sent();
    meter.dead();
    now += MINUTE; // minute 101
    meter.sent();
    now += 2 * MINUTE; // minute 103, nothing in 102
    const series = meter.series();
    expect(series).toEqual({
      slotMs: MINUTE,
      lastSlotStart: 103 * MINUTE,
      sent: [0, 2, 1, 0, 0],
      dead: [0, 1, 0, 0, 0],
    });
  });

  test("a slot last used a full ring ago is reused, not added to; old minutes drop out", () => {
    let now = 10 * MINUTE;
    const meter = new ThroughputMeter({ minutes: 3, now: () => now });
    meter.sent(); // minute 10
    now = 13 * MINUTE; // same slot as 10
    meter.sent();
    expect(meter.series().sent).toEqual([0, 0, 1]);
    now = 20 * MINUTE; // long quiet: everything is out of the window
    expect(meter.series().sent).toEqual([0, 0, 0]);
  });

  test("an hour by default; refuses a ring of no minutes", () => {
    expect(new ThroughputMeter().series().sent).toHaveLength(60);
    expect(() => new ThroughputMeter({ minutes: 0 })).toThrow(TypeError);
  });
});
