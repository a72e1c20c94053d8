import { DatabaseSync } from "node:sqlite";
import type { InboundItem } from "../inbound/InboundJournal.ts";

/**
 * Encrypted room events whose key had not come when they were dispatched: kept here, by the
 * Megolm session they need, so that the room goes on meanwhile and the event is handled once
 * its key arrives (after a restart too). Rows older than the retention are dropped by `prune`.
 */
export class ParkedEvents {
  readonly #db: DatabaseSync;

  /** Opens (or creates) the table in the crypto store's file. Synchronous I/O. */
  constructor(file: string) {
    this.#db = new DatabaseSync(file);
    this.#db.exec(`PRAGMA journal_mode = WAL;
      PRAGMA busy_timeout = 5000;
      CREATE TABLE IF NOT EXISTS parked_events (
        event_id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        item TEXT NOT NULL,
        parked_at INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS parked_by_session ON parked_events (session_id);`);
  }

  park(eventId: string, sessionId: string, item: InboundItem): void {
    this.#db
      .prepare(
        "INSERT OR IGNORE INTO parked_events (event_id, session_id, item, parked_at) VALUES (?, ?, ?, ?)",
      )
      .run(eventId, sessionId, JSON.stringify({ ...item, payload: undefined }), Date.now());
  }

  /** The items waiting for this session, oldest first. */
  waitingFor(sessionId: string): InboundItem[] {
    return this.#db
      .prepare("SELECT item FROM parked_events WHERE session_id = ? ORDER BY parked_at")
      .all(sessionId)
      .map((row) => JSON.parse(row.item as string) as InboundItem);
  }

  /** Every session something waits for (at start: keys that came while the process was down). */
  sessions(): string[] {
    return this.#db
      .prepare("SELECT DISTINCT session_id FROM parked_events")
      .all()
      .map((row) => row.session_id as string);
  }

  done(eventId: string): void {
    this.#db.prepare("DELETE FROM parked_events WHERE event_id = ?").run(eventId);
  }

  count(): number {
    return (this.#db.prepare("SELECT count(*) AS n FROM parked_events").get() as { n: number }).n;
  }

  prune(before: number): number {
    return Number(this.#db.prepare("DELETE FROM parked_events WHERE parked_at < ?").run(before).changes);
  }

  close(): void {
    this.#db.close();
  }
}
