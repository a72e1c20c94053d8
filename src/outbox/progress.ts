import type { Outbox } from "./Outbox.ts";

/**
 * Watches a long outbox task (draining on shutdown, replaying a backlog, a bulk retry). The
 * outbox only calls these; a terminal bar or log lines are the caller's choice (src/cli).
 */
export interface ProgressObserver {
  start(total: number): void;
  update(done: number): void;
  stop(): void;
}

/**
 * Reports requests settled (sent or dead) by `outbox` out of `total`, every `intervalMs`, until
 * `total` are settled, the outbox is idle, or `until` resolves. Returns how many settled.
 */
export async function followOutbox(
  outbox: Outbox,
  observer: ProgressObserver,
  total: number,
  options: { until?: Promise<unknown>; intervalMs?: number } = {},
): Promise<number> {
  const settled = () => {
    const c = outbox.counters;
    return c.sent + c.dead;
  };
  const base = settled();
  const done = () => Math.min(total, settled() - base);
  observer.start(total);
  let timer: NodeJS.Timeout | undefined;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const tick = () => {
    observer.update(done());
    if (done() >= total) finish();
  };
  timer = setInterval(tick, options.intervalMs ?? 250);
  await Promise.race([finished, outbox.onIdle(), ...(options.until ? [options.until] : [])]);
  clearInterval(timer);
  timer = undefined;
  observer.update(done());
  observer.stop();
  return done();
}

/** Progress as log lines with counts (no terminal): at start, at most every `everyMs`, at the end. */
export function logProgress(
  log: { info(obj: object, msg: string): void },
  task: string,
  everyMs = 2000,
): ProgressObserver {
  let total = 0;
  let last = 0;
  let lastDone = -1;
  return {
    start(n) {
      total = n;
      last = Date.now();
      log.info({ task, total }, `${task}: ${total} to go`);
    },
    update(done) {
      if (done === lastDone || Date.now() - last < everyMs) return;
      last = Date.now();
      lastDone = done;
      log.info({ task, done, total }, `${task}: ${done}/${total}`);
    },
    stop() {
      log.info({ task, total }, `${task}: finished`);
    },
  };
}
