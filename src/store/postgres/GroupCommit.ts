interface Waiting<I, O> {
  readonly input: I;
  readonly resolve: (output: O) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Runs work submitted together as one batch (one transaction): the submissions of one turn of the
 * event loop, and everything submitted while a batch is committing, go into the next. Batches run
 * one at a time, in submission order, so what is submitted first commits first. Each submission
 * resolves with its own output once its batch has committed, or rejects with the batch's error.
 */
export class GroupCommit<I, O> {
  readonly #run: (inputs: readonly I[]) => Promise<O[]>;
  #waiting: Array<Waiting<I, O>> = [];
  #draining = false;
  /** Submissions so far, and those whose batch has committed or failed. */
  #submitted = 0;
  #finished = 0;
  #idle: Array<{ readonly upTo: number; readonly resolve: () => void }> = [];

  constructor(run: (inputs: readonly I[]) => Promise<O[]>) {
    this.#run = run;
  }

  submit(input: I): Promise<O> {
    this.#submitted++;
    return new Promise<O>((resolve, reject) => {
      this.#waiting.push({ input, resolve, reject });
      if (this.#draining) return;
      this.#draining = true;
      setImmediate(() => void this.#drain());
    });
  }

  /**
   * Resolves once everything submitted so far has committed (or failed). Not "once nothing is
   * running": under a steady stream of submissions that would never come, and reads wait here.
   */
  idle(): Promise<void> {
    if (this.#finished === this.#submitted) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push({ upTo: this.#submitted, resolve }));
  }

  async #drain(): Promise<void> {
    while (this.#waiting.length > 0) {
      const batch = this.#waiting;
      this.#waiting = [];
      try {
        const outputs = await this.#run(batch.map((w) => w.input));
        batch.forEach((w, i) => w.resolve(outputs[i] as O));
      } catch (error) {
        for (const w of batch) w.reject(error);
      }
      this.#finished += batch.length;
      const waiting = this.#idle;
      this.#idle = waiting.filter((w) => w.upTo > this.#finished);
      for (const w of waiting) if (w.upTo <= this.#finished) w.resolve();
    }
    this.#draining = false;
  }
}
