// Every fuzz property runs through these parameters: a seed that is printed (and can be given
// back to replay a failure), a bounded number of runs and a time limit, so the whole fuzz suite
// stays under a minute on a loaded 2-core machine.
import fc from "fast-check";

export interface FuzzBudget {
  /** Runs of the property; multiplied by FUZZ_RUNS_FACTOR (default 1) for a longer local session. */
  readonly numRuns: number;
  /** Wall-clock limit of the whole property, shrinking included; runs left over are skipped. */
  readonly timeLimitMs: number;
  /**
   * Limit of one run of an async property: a run that takes longer fails (a hang is a failure,
   * not an interrupted run). @default 10000
   */
  readonly runTimeoutMs?: number;
}

function seedFromEnvironment(): number {
  const given = process.env.FUZZ_SEED;
  if (given !== undefined && given !== "") {
    const seed = Number(given);
    if (!Number.isSafeInteger(seed)) throw new TypeError(`Expected FUZZ_SEED to be an integer, got ${given}`);
    return seed;
  }
  return (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
}

/**
 * fast-check parameters for one property: seeded (FUZZ_SEED, else random), bounded in runs and
 * time. Prints the seed on stderr, so a failure in CI can be replayed with `FUZZ_SEED=<seed>`
 * (and `FUZZ_PATH=<path>` from fast-check's failure message to start at the counterexample).
 */
export function fuzzParameters<T>(name: string, budget: FuzzBudget): fc.Parameters<T> {
  const seed = seedFromEnvironment();
  const factor = Number(process.env.FUZZ_RUNS_FACTOR ?? "1") || 1;
  const numRuns = Math.max(1, Math.round(budget.numRuns * factor));
  process.stderr.write(`[fuzz] ${name}: seed ${seed}, ${numRuns} runs (replay: FUZZ_SEED=${seed})\n`);
  const path = process.env.FUZZ_PATH;
  return {
    seed,
    ...(path ? { path } : {}),
    numRuns,
    // Interrupted after at least one run is a pass with fewer runs; with none it fails.
    plugins: [
      fc.interruptAfterTimeLimit(budget.timeLimitMs * factor) as fc.Plugin<T>,
      fc.timeout(budget.runTimeoutMs ?? 10_000) as fc.Plugin<T>,
    ],
  };
}
