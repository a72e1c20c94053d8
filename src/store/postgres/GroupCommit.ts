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
  #running: Promise<void> | undefined;

  constructor(run: (inputs: readonly I[]) => Promise<O[]>) {
    this.#run = run;
  }

  submit(input: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#waiting.push({ input, resolve, reject });
      this.#running ??= new Promise<void>((started) => setImmediate(started)).then(() => this.#drain());
    });
  }

  /** Resolves once everything submitted so far has committed (or failed). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
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
    }
    this.#running = undefined;
  }
}
