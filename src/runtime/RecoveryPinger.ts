export interface RecoveryPingerOptions {
  /** Asks the homeserver to ping us back; a successful ping makes Synapse resend its backlog at once. */
  readonly ping: () => Promise<unknown>;
  /** First pause after a refused transaction. @default 2000 */
  readonly baseMs?: number;
  /** Longest pause between two pings. @default 60000 */
  readonly capMs?: number;
}

/**
 * After the inbound journal refused a transaction (answered 500), the homeserver resends it on
 * its own backoff, which in Synapse grows to ~8.5 min. This pings the homeserver, with a backoff
 * of its own (2 s doubling to 60 s), until a transaction is journaled again, so a store that
 * heals is used within a minute. At most one ping is pending at a time.
 */
export class RecoveryPinger {
  readonly #ping: () => Promise<unknown>;
  readonly #baseMs: number;
  readonly #capMs: number;
  #timer: NodeJS.Timeout | undefined;
  #pings = 0;
  #active = false;
  #stopped = false;

  constructor(options: RecoveryPingerOptions) {
    this.#ping = options.ping;
    this.#baseMs = options.baseMs ?? 2_000;
    this.#capMs = options.capMs ?? 60_000;
  }

  /** Pings sent since the journal last refused a transaction. No I/O. */
  get pings(): number {
    return this.#pings;
  }

  /** A transaction was refused: start pinging, unless already. No I/O now; pings later. */
  refused(): void {
    if (this.#stopped) return;
    this.#active = true;
    this.#schedule();
  }

  /** A transaction was journaled: the store works, stop pinging. Returns whether pings were running. */
  journaled(): boolean {
    const was = this.#active;
    this.#active = false;
    this.#pings = 0;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    return was;
  }

  stop(): void {
    this.#stopped = true;
    this.journaled();
  }

  #schedule(): void {
    if (this.#timer || !this.#active || this.#stopped) return;
    const delay = Math.min(this.#capMs, this.#baseMs * 2 ** Math.min(this.#pings, 30));
    this.#timer = setTimeout(() => {
      this.#pings++;
      void this.#ping()
        .catch(() => {})
        .finally(() => {
          this.#timer = undefined;
          this.#schedule();
        });
    }, delay);
    this.#timer.unref();
  }
}
