// What Synapse pushed to the framework, attempt by attempt, as the FaultProxy in front of the
// framework saw it (E2eStack's `toCourier`): each PUT /_matrix/app/v1/transactions/{txnId}, what it
// carried, whether a fault was injected, and whether the framework's answer reached Synapse.
// Plus a read-only look into Synapse's own bookkeeping of the appservice (its SQLite database).
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { FaultProxy, ProxiedRequest, ProxyFaultKind } from "../../support/FaultProxy.ts";
import type { E2eStack } from "./E2eStack.ts";

const TRANSACTION = /^\/_matrix\/app\/v1\/transactions\/([^/]+)$/;

/** What one transaction body carried, summarised as strings a test can look for. */
export interface Carried {
  /** `events[].event_id` */
  readonly eventIds: string[];
  /** `events[].content.body` of messages */
  readonly bodies: string[];
  /** `content.nonce` of each to-device message (stable and unstable spelling). */
  readonly toDeviceNonces: string[];
  /** Each ephemeral event: `m.typing <room> <user ids>` or `m.receipt <room> <event id> <type> <user>`… */
  readonly ephemeral: string[];
}

export interface Attempt {
  /** Arrival order, from 0. */
  readonly seq: number;
  readonly txnId: string;
  readonly carried: Carried;
  /** The fault the proxy injected into this attempt, if any. */
  fault: ProxyFaultKind | undefined;
  /** The framework's status, once the proxy handed it whole to Synapse. */
  answered: number | undefined;
}

/** `txnId` of a transaction push, or undefined for anything else. */
export function transactionId(request: ProxiedRequest): string | undefined {
  if (request.method !== "PUT") return undefined;
  const match = TRANSACTION.exec(request.path);
  return match ? decodeURIComponent(match[1]!) : undefined;
}

type Json = Record<string, unknown>;
const isJson = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value);
const objectAt = (value: Json, key: string): Json => (isJson(value[key]) ? value[key] : {});

export function carriedBy(body: Buffer | undefined): Carried {
  const carried: Carried = { eventIds: [], bodies: [], toDeviceNonces: [], ephemeral: [] };
  let value: unknown;
  try {
    value = JSON.parse(body?.toString("utf8") ?? "");
  } catch {
    return carried;
  }
  if (!isJson(value)) return carried;
  const list = (...keys: string[]): Json[] =>
    keys.flatMap((key) => {
      const part = value[key];
      return Array.isArray(part) ? part.filter(isJson) : [];
    });
  for (const event of list("events")) {
    if (typeof event.event_id === "string") carried.eventIds.push(event.event_id);
    const text = objectAt(event, "content").body;
    if (typeof text === "string") carried.bodies.push(text);
  }
  for (const message of list("to_device", "de.sorunome.msc2409.to_device")) {
    const nonce = objectAt(message, "content").nonce;
    if (typeof nonce === "string") carried.toDeviceNonces.push(nonce);
  }
  for (const event of list("ephemeral", "de.sorunome.msc2409.ephemeral")) {
    const content = objectAt(event, "content");
    const room = String(event.room_id);
    if (event.type === "m.typing") {
      const users = Array.isArray(content.user_ids) ? content.user_ids : [];
      carried.ephemeral.push(`m.typing ${room} ${users.join(",")}`);
    } else if (event.type === "m.receipt") {
      for (const [eventId, byType] of Object.entries(content)) {
        for (const [type, byUser] of Object.entries(isJson(byType) ? byType : {})) {
          for (const userId of Object.keys(isJson(byUser) ? byUser : {})) {
            carried.ephemeral.push(`m.receipt ${room} ${eventId} ${type} ${userId}`);
          }
        }
      }
    } else {
      carried.ephemeral.push(String(event.type));
    }
  }
  return carried;
}

/** Records every transaction push through `proxy` from now on. */
export class TransactionLog {
  readonly attempts: Attempt[] = [];
  readonly #byRequest = new WeakMap<ProxiedRequest, Attempt>();

  constructor(proxy: FaultProxy) {
    proxy.on("request", (request) => {
      const txnId = transactionId(request);
      if (txnId === undefined) return;
      const attempt: Attempt = {
        seq: this.attempts.length,
        txnId,
        carried: carriedBy(request.body),
        fault: undefined,
        answered: undefined,
      };
      this.attempts.push(attempt);
      this.#byRequest.set(request, attempt);
    });
    proxy.on("fault", ({ kind, request }) => {
      const attempt = this.#byRequest.get(request);
      if (attempt) attempt.fault = kind;
    });
    proxy.on("answered", ({ request, status }) => {
      const attempt = this.#byRequest.get(request);
      if (attempt) attempt.answered = status;
    });
  }

  of(txnId: string): Attempt[] {
    return this.attempts.filter((a) => a.txnId === txnId);
  }

  /** The attempts that carried something `where` accepts. */
  carrying(where: (carried: Carried) => boolean): Attempt[] {
    return this.attempts.filter((a) => where(a.carried));
  }

  /** An attempt of `txnId` after `after` that Synapse got a 200 for (the resend landed). */
  resentAndAcked(txnId: string, after: Attempt): Attempt | undefined {
    return this.of(txnId).find((a) => a.seq > after.seq && a.answered === 200);
  }

  /** Transaction ids Synapse got a 200 for. */
  acked(): Set<string> {
    return new Set(this.attempts.filter((a) => a.answered === 200).map((a) => a.txnId));
  }

  /** One line per attempt, for failure messages. */
  describe(): string {
    return this.attempts
      .map(
        (a) =>
          `#${a.seq} txn ${a.txnId} fault=${a.fault ?? "-"} answered=${a.answered ?? "-"} ` +
          JSON.stringify(a.carried),
      )
      .join("\n");
  }
}

/**
 * Synapse's view of the appservice, read from its SQLite database: its state (`up`, `down`, or
 * undefined before any transaction) from `application_services_state`, and the transactions it
 * has created but not yet seen acknowledged (`application_services_txns`; a row is deleted by
 * `complete_appservice_txn` once the appservice answered 200).
 */
export function synapseAppservice(
  stack: E2eStack,
  asId = "courier",
): { state: string | undefined; pendingTxnIds: number[] } {
  const db = new DatabaseSync(path.join(stack.synapse.dataDir, "homeserver.db"), { readOnly: true });
  try {
    const row = db.prepare("SELECT state FROM application_services_state WHERE as_id = ?").get(asId) as
      { state: string | null } | undefined;
    const pending = db
      .prepare("SELECT txn_id FROM application_services_txns WHERE as_id = ? ORDER BY txn_id")
      .all(asId) as Array<{ txn_id: number }>;
    return { state: row?.state ?? undefined, pendingTxnIds: pending.map((r) => r.txn_id) };
  } finally {
    db.close();
  }
}

/**
 * Waits until Synapse has every transaction acknowledged and counts the appservice as up. On a
 * loaded machine Synapse may have backed off for a minute or more (2, 4 … 512 s between tries),
 * so every few seconds this asks for an appservice ping, which makes Synapse retry at once
 * (`force_retry` in synapse/rest/client/appservice_ping.py), as an operator would: it speeds the
 * delivery up and hides nothing, since whatever Synapse resends arrives before the check passes.
 *
 * Synapse can also strand a transaction: `_Recoverer.retry` (synapse/appservice/scheduler.py)
 * finds nothing left to send and marks the appservice up, and a transaction that
 * `_TransactionController.send` created in between (it still saw the appservice down, so it stored
 * it without sending) is then sent by nobody until a later push fails; `force_retry` does nothing
 * once no recoverer runs. When the appservice is up and the same transactions have waited for
 * `strandedAfterMs`, `unstrand` is called to make a push fail, which starts a recoverer that sends
 * the oldest first.
 */
export async function untilSynapseCaughtUp(
  stack: E2eStack,
  timeoutMs: number,
  options: { asId?: string; unstrand?: () => Promise<void>; strandedAfterMs?: number } = {},
): Promise<void> {
  const { asId = "courier", unstrand, strandedAfterMs = 20_000 } = options;
  const deadline = Date.now() + timeoutMs;
  let nudged = Date.now();
  let waiting = { pending: "", since: Date.now() };
  for (let n = 0; ; n++) {
    const seen = synapseAppservice(stack, asId);
    if (seen.state !== "down" && seen.pendingTxnIds.length === 0) return;
    if (Date.now() >= deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for Synapse to have every transaction acknowledged (state ${seen.state}, pending ${seen.pendingTxnIds.join(", ")})`,
      );
    }
    const pending = seen.pendingTxnIds.join(",");
    if (seen.state === "down" || pending !== waiting.pending) waiting = { pending, since: Date.now() };
    else if (unstrand && Date.now() - waiting.since >= strandedAfterMs) {
      console.log(`Synapse stranded transaction(s) ${pending} with the appservice up: making a push fail`);
      await unstrand();
      waiting = { pending, since: Date.now() };
    }
    if (Date.now() - nudged >= 5_000) {
      nudged = Date.now();
      await fetch(`${stack.synapse.baseUrl}/_matrix/client/v1/appservice/${encodeURIComponent(asId)}/ping`, {
        method: "POST",
        headers: { authorization: `Bearer ${stack.asToken}`, "content-type": "application/json" },
        body: JSON.stringify({ transaction_id: `test-nudge-${n}` }),
      }).catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
