// `courier inbound …`: what the homeserver pushed and what became of it, also while the service
// runs (SQLite WAL lets this process read beside it). Read-only: nothing here writes a row.
import { existsSync } from "node:fs";
import { loadConfig } from "../config/loadConfig.ts";
import type { CourierConfig } from "../config/schema.ts";
import { loadRegistration } from "../config/registration.ts";
import { CourierError } from "../errors.ts";
import { scrubSecrets } from "../logging/createLogger.ts";
import type { InboundRecord, InboundState } from "../inbound/InboundJournal.ts";
import { SqliteInboundJournal } from "../store/sqlite/SqliteInboundJournal.ts";

/** The states `courier inbound list --state` takes: settled ones (pending items are not listed). */
export const LISTED_STATES = ["rejected", "dead", "done"] as const;
export type ListedState = (typeof LISTED_STATES)[number] & InboundState;

/** Characters of a reason shown on a line before it is cut (`--full` and `--json` show it all). */
const REASON_CHARS = 300;
/** Characters of an item's JSON shown under its line before it is cut. */
const ITEM_CHARS = 160;

async function withJournal<T>(
  configPath: string,
  work: (journal: SqliteInboundJournal, print: (line: string) => void) => Promise<T>,
): Promise<T> {
  const config = loadConfig(configPath);
  // Looking must not create a store: a wrong --config would leave an empty file behind.
  if (config.store.path !== ":memory:" && !existsSync(config.store.path)) {
    throw new CourierError(
      "COURIER_NO_STORE",
      "M_NOT_FOUND",
      404,
      `no store at ${config.store.path} (has the service run with this config?)`,
    );
  }
  const secrets = knownSecrets(config);
  // Items hold no tokens, but a handler's error (a dead item's reason) is free text: known
  // secrets never reach the terminal, as they never reach the log.
  const print = (line: string) => process.stdout.write(`${scrubSecrets(line, secrets)}\n`);
  const journal = new SqliteInboundJournal({
    path: config.store.path,
    synchronous: config.store.synchronous,
  });
  try {
    return await work(journal, print);
  } finally {
    await journal.close();
  }
}

/** The tokens this deployment uses: the config's, and the registration's when it can be read. */
function knownSecrets(config: CourierConfig): string[] {
  const secrets = [
    config.appservice.asToken,
    config.appservice.hsToken,
    config.admin.token,
    config.metrics.token,
  ];
  try {
    const registration = loadRegistration(config.appservice.registration);
    secrets.push(registration.asToken, registration.hsToken);
  } catch {
    // No registration (yet): the config's tokens are all there is to hide.
  }
  return secrets.filter((s): s is string => typeof s === "string" && s.length > 0);
}

/** `pending 2  done 40  dead 1  rejected 3`, or `{"totals": {...}}`. */
export async function inboundStats(configPath: string, json: boolean): Promise<void> {
  await withJournal(configPath, async (journal, print) => {
    const totals = await journal.totals();
    if (json) return print(JSON.stringify({ totals }));
    print(`pending ${totals.pending}\tdone ${totals.done}\tdead ${totals.dead}\trejected ${totals.rejected}`);
  });
}

/**
 * Settled items, newest first: one tab-separated line each (seq, received, state, txnId, kind,
 * lane, event id, attempts, reason), the item's JSON under it (cut unless `full`); with `json`,
 * one JSON object per line instead.
 */
export async function inboundList(
  configPath: string,
  filter: { state?: ListedState; limit: number; json: boolean; full: boolean },
): Promise<void> {
  await withJournal(configPath, async (journal, print) => {
    const records = await journal.list({
      limit: filter.limit,
      ...(filter.state ? { state: filter.state } : {}),
    });
    for (const record of records) {
      if (filter.json) print(JSON.stringify(recordJson(record)));
      else for (const line of describeRecord(record, filter.full)) print(line);
    }
    if (!filter.json && records.length === 0) print("(nothing)");
  });
}

function recordJson(record: InboundRecord): Record<string, unknown> {
  return {
    seq: record.seq,
    state: record.state,
    receivedAt: record.receivedAt === 0 ? null : new Date(record.receivedAt).toISOString(),
    settledAt: record.settledAt === undefined ? null : new Date(record.settledAt).toISOString(),
    txnId: record.txnId,
    kind: record.kind,
    lane: record.lane,
    eventId: record.eventId ?? null,
    attempts: record.attempts,
    reason: record.error ?? null,
    item: parseOr(record.json),
  };
}

/** The item as JSON (it was stored as `JSON.stringify` of it); the text itself if it is not. */
function parseOr(json: string): unknown {
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return json;
  }
}

/**
 * The lines of one record. Every value from the network goes through `printable`: a reason or an
 * event id cannot move the cursor, change colours or break the columns.
 */
function describeRecord(record: InboundRecord, full: boolean): string[] {
  const reason = printable(record.error ?? "");
  const item = printable(record.json);
  return [
    [
      String(record.seq),
      record.receivedAt === 0 ? "-" : new Date(record.receivedAt).toISOString().replace(/\.\d{3}Z$/, "Z"),
      record.state,
      printable(record.txnId),
      record.kind,
      printable(record.lane),
      record.eventId === undefined ? "-" : printable(record.eventId),
      String(record.attempts),
      full ? reason : cut(reason, REASON_CHARS),
    ].join("\t"),
    `  ${full ? item : cut(item, ITEM_CHARS)}`,
  ];
}

/**
 * Control characters (C0, DEL, C1: escape sequences, tabs, newlines), line and paragraph
 * separators and bidirectional overrides, written as `\uXXXX` (`\n`, `\t`, `\r` by name).
 */
function printable(text: string): string {
  return text.replace(/[\p{Cc}\p{Zl}\p{Zp}\u202a-\u202e\u2066-\u2069]/gu, (c) =>
    c === "\n"
      ? "\\n"
      : c === "\t"
        ? "\\t"
        : c === "\r"
          ? "\\r"
          : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** At most `max` characters, the last one `…` when cut; never half of a surrogate pair. */
function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}
