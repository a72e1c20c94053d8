// What SQLite alone costs per message on this machine, in the benchmark's own process: the least
// that journaling adds to a plain HTTP loop, whatever the framework around it. Two figures each:
//
// - minimal: the fewest statements any SQLite journal needs, with the store's settings (WAL,
//   synchronous NORMAL, 32 MB page cache). Outbound: one INSERT of the request with a unique
//   integer key (its txnId, deduplicated) and one UPDATE with its outcome, 64 to a commit.
//   Inbound: one INSERT per event with its key unique in the row, one commit per transaction.
// - ours: matrix-courier's own store doing the same work (SqliteOutboxStore.insert + settle;
//   SqliteInboundJournal.journal + record of the handled outcomes), the rest of the framework
//   left out.
//
// Both are CPU (process.cpuUsage, user + system) per message, the median of 3 rounds.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { TxnId } from "../src/ids.ts";
import { parseTransaction } from "../src/inbound/parseTransaction.ts";
import type { NewOutboxRow } from "../src/store/OutboxStore.ts";
import { SqliteInboundJournal } from "../src/store/sqlite/SqliteInboundJournal.ts";
import { SqliteOutboxStore } from "../src/store/sqlite/SqliteOutboxStore.ts";
import { median, percentile, round } from "./support.ts";

const ROUNDS = 3;
const GROUP = 64;

export interface FloorFigures {
  /** µs of CPU per message. */
  readonly minimal_us: number;
  readonly ours_us: number;
  /** One commit of the minimal path (64 requests, or one transaction), ms. */
  readonly commit_p50_ms: number;
  readonly commit_p99_ms: number;
}

const cpuUs = () => {
  const used = process.cpuUsage();
  return used.user + used.system;
};

function openMinimal(file: string, schema: string): DatabaseSync {
  const db = new DatabaseSync(file);
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -32768; ${schema}`);
  return db;
}

/** Runs `round` ROUNDS times in fresh folders; the median of each figure. */
async function rounds(
  measure: (dir: string) => Promise<{ minimal: number; ours: number; commits: number[] }>,
): Promise<FloorFigures> {
  const results = [];
  for (let r = 0; r < ROUNDS; r++) {
    const dir = mkdtempSync(join(tmpdir(), "courier-floor-"));
    try {
      results.push(await measure(dir));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const commits = results.flatMap((r) => r.commits);
  return {
    minimal_us: round(median(results.map((r) => r.minimal))),
    ours_us: round(median(results.map((r) => r.ours))),
    commit_p50_ms: round(percentile(commits, 50), 3),
    commit_p99_ms: round(percentile(commits, 99), 3),
  };
}

/** The outbox: `messages` room messages into `rooms` rooms, journaled then settled. */
export function outboxFloor(messages: number, rooms: number): Promise<FloorFigures> {
  const path = (i: number) =>
    `/_matrix/client/v3/rooms/!bench${i % rooms}%3Abench/send/m.room.message/${String(i).padStart(43, "c")}`;
  const body = (i: number) => JSON.stringify({ msgtype: "m.text", body: `message ${i}` });
  return rounds(async (dir) => {
    const db = openMinimal(
      join(dir, "minimal.db"),
      `CREATE TABLE outbox (seq INTEGER PRIMARY KEY, txn_key INTEGER NOT NULL UNIQUE, txn_id TEXT NOT NULL,
         lane_id INTEGER NOT NULL, kind TEXT NOT NULL, sender TEXT NOT NULL, method TEXT NOT NULL,
         path TEXT NOT NULL, body TEXT, state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
         event_id TEXT, created_at INTEGER NOT NULL, settled_at INTEGER)`,
    );
    const insert = db.prepare(
      `INSERT INTO outbox (seq, txn_key, txn_id, lane_id, kind, sender, method, path, body, created_at)
       VALUES (?, ?, ?, ?, 'send', '@bot:bench', 'PUT', ?, ?, ?)`,
    );
    const settle = db.prepare(
      "UPDATE outbox SET state = 'sent', event_id = ?, attempts = 1, settled_at = ? WHERE seq = ?",
    );
    const keys = Array.from({ length: messages }, () => randomBytes(8).readBigInt64BE());
    const commits: number[] = [];
    const inGroups = (work: (i: number) => void) => {
      for (let g = 0; g < messages; g += GROUP) {
        const started = performance.now();
        db.exec("BEGIN IMMEDIATE");
        for (let i = g; i < Math.min(messages, g + GROUP); i++) work(i);
        db.exec("COMMIT");
        commits.push(performance.now() - started);
      }
    };
    let before = cpuUs();
    inGroups((i) => insert.run(i + 1, keys[i]!, `txn${i}`, i % rooms, path(i), body(i), Date.now()));
    inGroups((i) => settle.run(`$event${i}`, Date.now(), i + 1));
    const minimal = (cpuUs() - before) / messages;
    db.close();

    const store = new SqliteOutboxStore({ path: join(dir, "ours.db") });
    before = cpuUs();
    for (let g = 0; g < messages; g += GROUP) {
      const rows: NewOutboxRow[] = [];
      for (let i = g; i < Math.min(messages, g + GROUP); i++) {
        rows.push({
          txnId: `txn${i}` as TxnId,
          lane: `room:!bench${i % rooms}:bench`,
          kind: "send",
          sender: "@bot:bench",
          request: { method: "PUT", path: path(i), body: body(i) },
        });
      }
      // One insert per message, as producers call it: the store groups them into one commit.
      const outcomes = await Promise.all(rows.map((row) => store.insert([row])));
      void store.settle(
        outcomes.map(([o]) => ({
          seq: o!.row.seq,
          txnId: o!.row.txnId,
          lane: o!.row.lane,
          attempts: 1,
          state: "sent",
          eventId: `$event${o!.row.seq}`,
        })),
      );
    }
    await store.flush();
    const ours = (cpuUs() - before) / messages;
    await store.close();
    return { minimal, ours, commits };
  });
}

/** The inbound journal: transaction bodies as the homeserver sends them, journaled then handled. */
export function inboundFloor(bodies: readonly string[]): Promise<FloorFigures> {
  const transactions = bodies.map((body, t) => {
    const parsed = parseTransaction(Buffer.from(body), `t${t}`);
    if (!parsed.ok) throw new Error(`transaction ${t}: ${parsed.detail}`);
    return parsed.items;
  });
  const events = transactions.reduce((n, items) => n + items.length, 0);
  return rounds(async (dir) => {
    const db = openMinimal(
      join(dir, "minimal.db"),
      `CREATE TABLE items (seq INTEGER PRIMARY KEY, item_key TEXT NOT NULL UNIQUE, txn_id TEXT NOT NULL,
         kind TEXT NOT NULL, lane TEXT NOT NULL, event_id TEXT, json TEXT NOT NULL, received_at INTEGER NOT NULL)`,
    );
    const insert = db.prepare("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    const commits: number[] = [];
    let seq = 0;
    let before = cpuUs();
    transactions.forEach((items, t) => {
      const started = performance.now();
      db.exec("BEGIN IMMEDIATE");
      for (const item of items) {
        insert.run(
          ++seq,
          item.key,
          `t${t}`,
          item.kind,
          item.lane,
          item.eventId ?? null,
          item.json,
          Date.now(),
        );
      }
      db.exec("COMMIT");
      commits.push(performance.now() - started);
    });
    const minimal = (cpuUs() - before) / events;
    db.close();

    const journal = new SqliteInboundJournal({ path: join(dir, "ours.db") });
    before = cpuUs();
    for (const [t, items] of transactions.entries()) {
      const outcome = await journal.journal(`t${t}`, items);
      await journal.record({
        begun: [],
        settled: outcome.items.map((item) => ({ seq: item.seq, state: "done" })),
      });
    }
    const ours = (cpuUs() - before) / events;
    await journal.close();
    return { minimal, ours, commits };
  });
}
