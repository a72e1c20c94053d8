/**
 * Work queued per key (a channel) and run one at a time per key, in the order queued; keys run
 * concurrently. `idle()` resolves once everything queued so far has run.
 */
export class Lanes {
  readonly #tails = new Map<string, Promise<void>>();

  push(key: string, work: () => Promise<void>): void {
    const tail = (this.#tails.get(key) ?? Promise.resolve()).then(work);
    const settled = tail
      .catch(() => {})
      .finally(() => {
        if (this.#tails.get(key) === settled) this.#tails.delete(key);
      });
    this.#tails.set(key, settled);
  }

  async idle(): Promise<void> {
    while (this.#tails.size > 0) await Promise.all(this.#tails.values());
  }
}
