import type { Logger } from "pino";
import type { PluginStore } from "../store/PluginStore.ts";
import type { RemoteEvent } from "./BridgeConnector.ts";
import { Lanes } from "./Lanes.ts";
import { MatrixError, MatrixNetworkError } from "../matrix/MatrixError.ts";
import { isJournalUnavailable } from "../errors.ts";
import { Sequence, padSeq } from "./Sequence.ts";

/** A journaled remote event: `id` is the remote one, or `s<seq>` assigned when it was journaled. */
export interface JournaledRemote {
  readonly seq: number;
  readonly id: string;
  readonly lane: string;
  readonly event: RemoteEvent;
}

export interface RemoteJournalOptions {
  readonly store: PluginStore;
  readonly log: Logger;
  /** Acts on one event (its Matrix sends keyed by its id). Run again after a crash: must be idempotent. */
  readonly act: (entry: JournaledRemote) => Promise<void>;
  /**
   * Tries of one event the homeserver refuses (a 4xx other than 429) before it is set aside
   * (`rdead:` in the store, logged). Network errors, 5xx and 429 are tried again without limit:
   * a homeserver outage delays remote events, it does not drop them. @default 8
   */
  readonly maxAttempts?: number;
  /** @default 250 */
  readonly retryBaseMs?: number;
  /** Aborted at stop: no new try starts. */
  readonly stopping: AbortSignal;
  /**
   * How long a remote id is remembered as seen (a redelivery later than this is acted on again;
   * its sends still collapse in the outbox while Synapse dedupes them). @default a day
   */
  readonly rememberIdsMs?: number;
}

/**
 * Remote → Matrix: every remote event is a committed row (`rin:<seq>`) before the framework acts
 * on it, and is deleted only after its Matrix sends are journaled in the outbox. A crash in
 * between replays it under the same id, and the outbox's deterministic txnIds collapse the
 * replay onto the rows already there. A redelivered event with a remote id already seen is
 * dropped at `report`. Events of one channel are acted on in journal order.
 */
export class RemoteJournal {
  readonly #options: RemoteJournalOptions;
  readonly #seq = new Sequence();
  readonly #lanes = new Lanes();
  #started = false;
  readonly #early: JournaledRemote[] = [];

  constructor(options: RemoteJournalOptions) {
    this.#options = options;
  }

  /** Replays what a previous run journaled and did not finish, then acts on new reports. Does I/O. */
  async start(): Promise<number> {
    const keep = this.#options.rememberIdsMs ?? 86_400_000;
    for (const { key, value } of await this.#options.store.list<number>("rseen:")) {
      if (Date.now() - value > keep) await this.#options.store.delete(key);
    }
    const left = await this.#options.store.list<JournaledRemote>("rin:");
    for (const { value } of left) {
      this.#seq.seen(value.seq);
      this.#schedule(value);
    }
    this.#started = true;
    for (const entry of this.#early.splice(0)) this.#schedule(entry);
    return left.length;
  }

  #reporting: Promise<void> = Promise.resolve();

  /**
   * Journals the event (one entry per channel of a rename) and resolves once committed. Reports
   * are journaled in call order, also when the connector does not wait for one before the next.
   */
  report(event: RemoteEvent): Promise<void> {
    const done = this.#reporting.then(() => this.#journal(event));
    this.#reporting = done.catch(() => {});
    return done;
  }

  async #journal(event: RemoteEvent): Promise<void> {
    const { store } = this.#options;
    const parts: Array<[string, RemoteEvent]> =
      event.kind === "rename"
        ? event.channelIds.map((c) => [c, { ...event, channelIds: [c] }])
        : [[event.channelId, event]];
    for (const [lane, part] of parts) {
      // A redelivery of an event already journaled (or done) is acted on once. The entry is
      // committed before the mark: a crash between them journals it twice under one id, and
      // its sends, keyed by that id, collapse in the outbox.
      const seenKey = event.id === undefined ? undefined : `rseen:${lane}\u0000${event.id}`;
      if (seenKey !== undefined && (await store.get(seenKey)) !== undefined) continue;
      const seq = this.#seq.next();
      const entry: JournaledRemote = { seq, id: event.id ?? `s${seq}`, lane, event: part };
      await store.set(`rin:${padSeq(seq)}`, entry);
      if (seenKey !== undefined) await store.set(seenKey, Date.now());
      if (this.#started) this.#schedule(entry);
      else this.#early.push(entry);
    }
  }

  /** Resolves once every event journaled so far is acted on (or set aside). */
  idle(): Promise<void> {
    return this.#lanes.idle();
  }

  #schedule(entry: JournaledRemote): void {
    this.#lanes.push(entry.lane, () => this.#run(entry));
  }

  async #run(entry: JournaledRemote): Promise<void> {
    const { store, log, act, stopping } = this.#options;
    const maxAttempts = this.#options.maxAttempts ?? 8;
    const base = this.#options.retryBaseMs ?? 250;
    let refusals = 0;
    for (let attempt = 1; !stopping.aborted; attempt++) {
      try {
        await act(entry);
        await store.delete(`rin:${padSeq(entry.seq)}`);
        return;
      } catch (error) {
        if (isRefusal(error)) refusals++;
        if (refusals >= maxAttempts) {
          log.error(
            { err: error, id: entry.id, lane: entry.lane },
            "remote event set aside after repeated failures",
          );
          await store.set(`rdead:${padSeq(entry.seq)}`, { ...entry, error: String(error) });
          await store.delete(`rin:${padSeq(entry.seq)}`);
          return;
        }
        log.warn({ err: error, id: entry.id, attempt }, "acting on a remote event failed; trying again");
        await new Promise((r) => setTimeout(r, Math.min(base * 2 ** Math.min(attempt - 1, 16), 10_000)));
      }
    }
  }
}

/**
 * The homeserver said no (a 4xx other than 429), or acting failed in a way a retry will not mend.
 * A network error, a 5xx, a 429 or a store that cannot commit is passing.
 */
function isRefusal(error: unknown): boolean {
  if (error instanceof MatrixError) return error.status >= 400 && error.status < 500 && error.status !== 429;
  return !(error instanceof MatrixNetworkError || isJournalUnavailable(error));
}
