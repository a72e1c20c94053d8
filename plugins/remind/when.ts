import { Cron } from "croner";
import { parseDuration } from "../../src/plugins/schedule.ts";

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const TIME = /^\d{1,2}:\d{2}$/;

/**
 * When a reminder is due, from the words after `!remind`: a duration ("10m", "1h30m") or a date
 * and time in `timezone` ("2026-12-01 09:00"). Returns the due time and the words left (the
 * text), or an error a person can act on.
 */
export function parseWhen(
  args: readonly string[],
  now: number,
  timezone: string,
): { due: number; rest: string[] } | { error: string } {
  const [first = "", second = ""] = args;
  const ms = parseDuration(first);
  if (ms !== undefined) return { due: now + ms, rest: args.slice(1) };
  if (DATE.test(first) && TIME.test(second)) {
    const [h, m] = second.split(":");
    const local = `${first}T${h!.padStart(2, "0")}:${m}:00`;
    let due: number | undefined;
    try {
      // croner resolves a local date in a timezone (DST included); a past date has no next run.
      due = new Cron(local, { paused: true, timezone }).nextRun(new Date(now))?.getTime();
    } catch {
      return { error: `"${first} ${second}" is not a date and time` };
    }
    if (due === undefined) return { error: `${first} ${second} (${timezone}) is in the past` };
    return { due, rest: args.slice(2) };
  }
  return {
    error: 'say when: a duration such as "10m" or "1h30m", or a date and time such as "2026-12-01 09:00"',
  };
}
