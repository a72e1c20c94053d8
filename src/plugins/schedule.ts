import { Cron } from "croner";

/** When a `bot.every` handler runs: fixed slots, so a restart finds the same slots again. */
export interface Schedule {
  /** The latest slot (ms epoch) in (`after`, `now`], or undefined when none passed. */
  latest(after: number, now: number): number | undefined;
  /** The first slot after `t`; undefined when the schedule has no more. */
  next(t: number): number | undefined;
}

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(?:\d+(?:ms|s|m|h|d))+$/;

/** "90s", "10m", "1h30m", "2d" → milliseconds; undefined when `text` is not a duration. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  let total = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(n) * (UNIT_MS[unit!] ?? 0);
  return total > 0 ? total : undefined;
}

/**
 * An interval (ms, or a duration such as "10m": slots are its multiples since the epoch, so they
 * do not move with restarts) or a cron expression (5 or 6 fields, in `timezone`).
 * Throws a TypeError naming the problem.
 */
export function parseSchedule(spec: number | string, timezone = "UTC"): Schedule {
  const ms = typeof spec === "number" ? spec : parseDuration(spec);
  if (ms !== undefined) {
    if (!Number.isInteger(ms) || ms < 1)
      throw new TypeError(`Expected a whole number of ms ≥ 1, got ${spec}`);
    return {
      latest: (after, now) => {
        const slot = Math.floor(now / ms) * ms;
        return slot > after ? slot : undefined;
      },
      next: (t) => (Math.floor(t / ms) + 1) * ms,
    };
  }
  let cron: Cron;
  try {
    cron = new Cron(spec as string, { paused: true, timezone });
  } catch (error) {
    throw new TypeError(
      `Expected an interval ("10m", "1h", ms) or a cron expression, got ${JSON.stringify(spec)}: ${(error as Error).message}`,
    );
  }
  return {
    latest: (after, now) => {
      const slot = cron.previousRuns(1, new Date(now + 1))[0]?.getTime();
      return slot !== undefined && slot > after ? slot : undefined;
    },
    next: (t) => cron.nextRun(new Date(t))?.getTime(),
  };
}
