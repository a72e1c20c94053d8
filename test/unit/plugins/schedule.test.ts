import { parseDuration, parseSchedule } from "../../../src/plugins/schedule.ts";

const at = (iso: string) => Date.parse(iso);

describe("parseDuration", () => {
  test("units and combinations", () => {
    expect(parseDuration("90s")).toBe(90_000);
    expect(parseDuration("10m")).toBe(600_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("2d")).toBe(172_800_000);
    expect(parseDuration("250ms")).toBe(250);
  });
  test("anything else is not a duration", () => {
    for (const text of ["", "10", "m", "10x", "1h 30m", "-5m", "0s"])
      expect(parseDuration(text)).toBeUndefined();
  });
});

describe("parseSchedule", () => {
  test("an interval's slots are its multiples since the epoch: a restart finds the same ones", () => {
    const s = parseSchedule("10m");
    const now = at("2026-11-23T12:34:56Z");
    expect(s.latest(0, now)).toBe(at("2026-11-23T12:30:00Z"));
    expect(s.next(now)).toBe(at("2026-11-23T12:40:00Z"));
    expect(s.next(at("2026-11-23T12:40:00Z"))).toBe(at("2026-11-23T12:50:00Z"));
    // Nothing new since the last slot run.
    expect(s.latest(at("2026-11-23T12:30:00Z"), now)).toBeUndefined();
  });

  test("after a long gap only the latest missed slot is due", () => {
    const s = parseSchedule(60_000);
    const last = at("2026-11-23T08:00:00Z");
    const now = at("2026-11-23T12:00:30Z");
    expect(s.latest(last, now)).toBe(at("2026-11-23T12:00:00Z"));
  });

  test("cron in a timezone", () => {
    const s = parseSchedule("0 9 * * *", "Europe/Berlin");
    const now = at("2026-11-23T12:00:00Z");
    expect(s.latest(0, now)).toBe(at("2026-11-23T08:00:00Z")); // 09:00 CET
    expect(s.next(now)).toBe(at("2026-11-24T08:00:00Z"));
    expect(s.latest(at("2026-11-23T08:00:00Z"), now)).toBeUndefined();
    // A slot exactly at `now` is due.
    expect(parseSchedule("*/5 * * * *").latest(0, at("2026-11-23T12:05:00Z"))).toBe(
      at("2026-11-23T12:05:00Z"),
    );
  });

  test("a bad schedule is a TypeError naming it", () => {
    expect(() => parseSchedule("every tuesday")).toThrow(/"every tuesday"/);
    expect(() => parseSchedule(0)).toThrow(TypeError);
    expect(() => parseSchedule(1.5)).toThrow(TypeError);
  });
});
