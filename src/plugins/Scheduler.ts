import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { PluginData } from "../store/PluginStore.ts";
import type { Schedule } from "./schedule.ts";

/** A longest sleep: the clock is looked at again at least this often (clock changes, DST). */
const MAX_SLEEP_MS = 3_600_000;
/** After a run the store could not record, or while another instance runs the slot, look again this much later. */
const RETRY_MS = 5_000;
/** How long a claim on a slot holds: longer than any run, so that a live holder is never overtaken. */
const CLAIM_MS = 300_000;

export interface ScheduledJob {
  readonly plugin: string;
  readonly name: string;
  readonly schedule: Schedule;
}

/** Time as the scheduler sees it; tests pass a manual clock. */
export interface SchedulerClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

const SYSTEM_CLOCK: SchedulerClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout),
};

export interface SchedulerOptions {
  readonly data: Pick<PluginData, "lastSlot" | "saveSlot" | "claimSlot">;
  /** Runs a job for one slot; resolves when it is done or given up, rejects when it must run again. */
  readonly run: (job: ScheduledJob, slot: number) => Promise<void>;
  readonly log: Logger;
  /** @default the system clock */
  readonly clock?: SchedulerClock;
}

interface JobState {
  readonly job: ScheduledJob;
  /** Slots up to here ran (or, before the first run, the time the schedule was first seen). */
  watermark: number;
  timer: unknown;
  running: Promise<void> | undefined;
}

/**
 * Runs `bot.every` jobs at their slots. The last slot run is saved per job, so after downtime
 * the slots missed run once (the latest of them), not once each; a slot interrupted by a crash
 * runs again, under the same cause, so its sends are not doubled. A slot is claimed before it
 * runs: of several instances on one store, one runs it; a claim whose holder died expires
 * (`CLAIM_MS`) and the slot runs again elsewhere.
 */
export class Scheduler {
  readonly #options: SchedulerOptions;
  readonly #clock: SchedulerClock;
  readonly #jobs: JobState[] = [];
  /** This scheduler's name on its claims. */
  readonly #holder = randomUUID();
  #stopped = true;

  constructor(options: SchedulerOptions) {
    this.#options = options;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
  }

  add(job: ScheduledJob): void {
    this.#jobs.push({ job, watermark: 0, timer: undefined, running: undefined });
  }

  /** Loads each job's last slot (a new job starts from now: no history, nothing missed) and runs what is due. */
  async start(): Promise<void> {
    this.#stopped = false;
    for (const state of this.#jobs) {
      const { plugin, name } = state.job;
      const last = await this.#options.data.lastSlot(plugin, name);
      if (last === undefined) {
        state.watermark = this.#clock.now();
        await this.#options.data.saveSlot(plugin, name, state.watermark);
      } else {
        state.watermark = last;
      }
    }
    await this.runDue();
  }

  /** Runs every job whose slot has come (each at most once), then sleeps until the next slot. */
  async runDue(): Promise<void> {
    await Promise.all(this.#jobs.map((state) => this.#tick(state)));
  }

  stop(): void {
    this.#stopped = true;
    for (const state of this.#jobs) this.#clock.clearTimeout(state.timer);
  }

  #tick(state: JobState): Promise<void> {
    // One run per job at a time: a tick while one runs waits for it.
    state.running ??= this.#runOnce(state).finally(() => (state.running = undefined));
    return state.running;
  }

  async #runOnce(state: JobState): Promise<void> {
    if (this.#stopped) return;
    this.#clock.clearTimeout(state.timer);
    const { job } = state;
    const due = job.schedule.latest(state.watermark, this.#clock.now());
    if (due !== undefined) {
      try {
        const now = this.#clock.now();
        const claim = await this.#options.data.claimSlot(
          job.plugin,
          job.name,
          due,
          this.#holder,
          now,
          now + CLAIM_MS,
        );
        if (claim === "busy") return this.#sleep(state, RETRY_MS); // another instance runs it now
        if (claim === "done") {
          state.watermark = (await this.#options.data.lastSlot(job.plugin, job.name)) ?? due;
          return this.#sleep(
            state,
            (job.schedule.next(Math.max(state.watermark, now)) ?? now + MAX_SLEEP_MS) - now,
          );
        }
        await this.#options.run(job, due);
        state.watermark = due;
        await this.#options.data.saveSlot(job.plugin, job.name, due);
      } catch (error) {
        this.#options.log.warn(
          { err: error, schedule: job.name, slot: due },
          "scheduled run will be retried",
        );
        this.#sleep(state, RETRY_MS);
        return;
      }
    }
    const next = job.schedule.next(Math.max(state.watermark, this.#clock.now()));
    if (next !== undefined) this.#sleep(state, next - this.#clock.now());
  }

  #sleep(state: JobState, ms: number): void {
    if (this.#stopped) return;
    state.timer = this.#clock.setTimeout(
      () => void this.#tick(state),
      Math.min(Math.max(ms, 0), MAX_SLEEP_MS),
    );
  }
}
