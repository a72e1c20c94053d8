// An in-process fake Matrix homeserver for integration tests, crash tests and benchmarks.
//
// Plain node:http, no framework: benchmarks push ~10k requests/s through it, so the hot path is
// string splitting, one JSON.parse and one small JSON answer. It behaves like Synapse where the
// framework's guarantees depend on it (see DESIGN.md, "Homeserver facts"):
//
// - send / redact / sendToDevice answers are cached by the raw request path WITHOUT the query
//   string (the masqueraded `user_id` is not part of the key); a repeat returns the cached answer
//   and stores nothing. Errors, 429 included, are never cached. `clearDedupeCache()` = restart.
// - a state PUT whose content equals the current state from the same sender returns the existing
//   event id (Synapse deduplicates identical state).
// - event content over 65536 bytes → 413 M_TOO_LARGE; bad JSON → 400 M_NOT_JSON.
//
// Faults (429, 500, 502, reset, drop-after-process, hang, delay, pause) are deterministic from
// `seed`: one PRNG draw per eligible request, compared against cumulative rates.

import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { randomBytes } from "node:crypto";

/** A fault that can be injected into one request. */
export type FaultKind = "429" | "500" | "502" | "reset" | "dropAfterProcess" | "hang";

export const FAULT_KINDS: readonly FaultKind[] = ["429", "500", "502", "reset", "dropAfterProcess", "hang"];

/** Decides which requests faults apply to. `path` is the raw path without the query string. */
export type FaultMatcher = (path: string, request: { method: string; url: string }) => boolean;

export interface FaultOptions {
  /** Probability (0..1) of answering 429 M_LIMIT_EXCEEDED. */
  rate429?: number;
  /** `retry_after_ms` of injected 429s (the `Retry-After` header carries it in seconds, rounded up). @default 100 */
  retryAfterMs?: number;
  /** Send only the `Retry-After` header (seconds), no `retry_after_ms` in the body. @default false */
  retryAfterHeaderOnly?: boolean;
  /** Probability of answering 500 M_UNKNOWN. */
  rate500?: number;
  /** Probability of answering 502 with an HTML body (what a reverse proxy sends). */
  rate502?: number;
  /** Probability of resetting the connection (TCP RST) before processing. */
  rateReset?: number;
  /** Probability of processing (storing the event), then resetting the connection without answering. */
  rateDropAfterProcess?: number;
  /** Delay before processing each eligible request. */
  delayMs?: number;
  /** Which requests faults apply to. @default the send-like PUTs: send, state, redact, sendToDevice */
  match?: FaultMatcher;
}

/** Faults settable over the control API of fakeHomeserverMain (no `match`: it is a function). */
export type SerializableFaultOptions = Omit<FaultOptions, "match">;

export interface FakeHomeserverOptions {
  /** When set, every Client-Server request (except /versions) needs `Authorization: Bearer <asToken>`. */
  asToken?: string;
  /** Seed of the fault PRNG (and of the event ids). @default a fixed seed for faults, random event ids */
  seed?: number;
  /** Record requests, room events and to-device messages. false = count only (benchmarks). @default true */
  record?: boolean;
  /** Server name used in generated ids. @default "fake.test" */
  serverName?: string;
  /** The appservice's own user (sender when no `user_id` is given). @default "@bot:<serverName>" */
  botUserId?: string;
  /** Maximum body of a send-like request. @default 65536 */
  maxEventBytes?: number;
  /** Masquerading as a user that was not registered (nor is the bot) → 403 M_FORBIDDEN. @default false */
  strictMasquerade?: boolean;
  /** User ids the appservice may register; others → 400 M_EXCLUSIVE. @default any */
  userNamespace?: RegExp;
  /** Serve the `/_fake/` control endpoints (no auth, never paused, not counted). @default false */
  control?: boolean;
  /** The appservice the homeserver talks to (for `/ping` and `pushTransaction`). */
  appservice?: AppserviceTarget;
  /** @default "127.0.0.1" */
  host?: string;
  /** @default 0 (any free port) */
  port?: number;
}

export interface AppserviceTarget {
  /** Base URL of the appservice, e.g. http://127.0.0.1:9000 */
  url: string;
  hsToken: string;
  /** Appservice id accepted by `/_matrix/client/v1/appservice/{id}/ping`. @default any */
  id?: string;
}

export interface RecordedRequest {
  method: string;
  /** Raw request target: path and query, exactly as sent. */
  url: string;
  /** Raw (still URL-encoded) path without the query string. */
  path: string;
  /** Decoded query parameters (the first value of each). */
  query: Record<string, string>;
  /** Body text as received ("" for none). */
  body: string;
  /** HTTP status answered; undefined while held or when the socket was destroyed instead. */
  status: number | undefined;
  /** The fault injected into this request, if any. */
  fault: FaultKind | undefined;
}

export interface StoredRoomEvent {
  eventId: string;
  roomId: string;
  /** "message" for /send, "state" for /state, "redaction" for /redact. */
  kind: "message" | "state" | "redaction";
  type: string;
  /** undefined for state events (they carry no transaction id). */
  txnId: string | undefined;
  /** Only for state events. */
  stateKey?: string;
  /** Only for redactions: the redacted event id. */
  redacts?: string;
  /** The masqueraded `user_id`, or the appservice bot. */
  sender: string;
  /** `device_id` (or `org.matrix.msc3202.device_id`) query parameter, if any. */
  deviceId: string | undefined;
  content: Record<string, unknown>;
}

export interface StoredToDevice {
  type: string;
  txnId: string;
  sender: string;
  deviceId: string | undefined;
  messages: Record<string, Record<string, unknown>>;
}

export interface FakeHomeserverStats {
  /** Client-Server requests received (control requests excluded). */
  requests: number;
  /** Room events and to-device requests stored. */
  stored: number;
  /** Requests answered from the dedupe cache (or identical state), storing nothing. */
  deduped: number;
  /** Non-fault error answers (404, 401/403, 400, 413 …). */
  rejected: number;
  /** Injected faults by kind. */
  faults: Record<FaultKind, number>;
}

export interface PushResult {
  status: number;
  body: unknown;
}

type Route =
  | { kind: "versions" }
  | { kind: "whoami" }
  | { kind: "register" }
  | { kind: "join"; target: string }
  | { kind: "send"; roomId: string; eventType: string; txnId: string }
  | { kind: "state"; roomId: string; eventType: string; stateKey: string }
  | { kind: "getState"; roomId: string; eventType: string; stateKey: string }
  | { kind: "redact"; roomId: string; eventId: string; txnId: string }
  | { kind: "toDevice"; eventType: string; txnId: string }
  | { kind: "ping"; appserviceId: string };

interface Answer {
  status: number;
  body: string;
  headers?: Record<string, string>;
  /** Cache the answer under this key (successful send-like requests). */
  cacheKey?: string;
}

interface RequestContext {
  method: string;
  url: string;
  path: string;
  query: URLSearchParams | undefined;
  body: string;
  bodyBytes: number;
  tooLarge: boolean;
  route: Route;
  sender: string;
  deviceId: string | undefined;
}

interface Hold {
  release: (proceed: boolean) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

const JSON_HEADERS = { "content-type": "application/json" } as const;
const MAX_REQUEST_BYTES = 8 * 1024 * 1024;
const DEFAULT_SEED = 0x5eed;
const DEFAULT_RETRY_AFTER_MS = 100;
const REFUSED_ROOM = {
  status: 403,
  errcode: "M_FORBIDDEN",
  error: "User is not in the room (refused by the test)",
} as const;
const SEND_LIKE: ReadonlySet<Route["kind"]> = new Set(["send", "state", "redact", "toDevice"]);

/** mulberry32: a tiny, fast, seedable PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const matrixError = (status: number, errcode: string, error: string, extra?: object): Answer => ({
  status,
  body: JSON.stringify({ errcode, error, ...extra }),
});

const ok = (value: unknown): Answer => ({ status: 200, body: JSON.stringify(value) });

function emptyFaultCounts(): Record<FaultKind, number> {
  return { "429": 0, "500": 0, "502": 0, reset: 0, dropAfterProcess: 0, hang: 0 };
}

/** Canonical JSON (sorted keys) to compare contents regardless of key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    return `{${Object.keys(obj)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(obj[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function checkRate(name: string, value: number | undefined): number {
  if (value === undefined) return 0;
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) {
    throw new RangeError(
      `FakeHomeserver.setFaults: ${name} must be a number between 0 and 1, got ${String(value)}`,
    );
  }
  return value;
}

export class FakeHomeserver {
  /** Every Client-Server request in arrival order (empty when `record` is false). */
  readonly requests: RecordedRequest[] = [];
  /** Every stored to-device request in arrival order (empty when `record` is false). */
  readonly toDeviceMessages: StoredToDevice[] = [];

  readonly asToken: string | undefined;
  readonly serverName: string;
  readonly botUserId: string;
  readonly record: boolean;

  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly options: FakeHomeserverOptions;
  private readonly maxEventBytes: number;
  private readonly eventIdTag: string;
  private random: () => number;
  private readonly seed: number;

  private counters = { requests: 0, stored: 0, deduped: 0, rejected: 0, faults: emptyFaultCounts() };
  private txnCache = new Map<string, string>();
  private events: StoredRoomEvent[] = [];
  private eventsByRoom = new Map<string, StoredRoomEvent[]>();
  private currentState = new Map<string, { eventId: string; sender: string; canonical: string }>();
  private registered = new Set<string>();
  private membership = new Map<string, Set<string>>();
  private nextEvent = 1;

  private refusedRooms = new Map<string, Answer>();
  private faults: FaultOptions = {};
  private faultThresholds = { reset: 0, r429: 0, r500: 0, r502: 0, drop: 0 };
  private scripted: { kind: FaultKind; match: FaultMatcher | undefined }[] = [];
  private paused = false;
  private readonly pausedQueue: Hold[] = [];
  private readonly holds = new Set<Hold>();
  private stopped = false;
  private appservice: AppserviceTarget | undefined;
  private boundPort = 0;
  private boundHost: string;

  private constructor(options: FakeHomeserverOptions) {
    this.options = options;
    this.asToken = options.asToken;
    this.serverName = options.serverName ?? "fake.test";
    this.botUserId = options.botUserId ?? `@bot:${this.serverName}`;
    this.record = options.record ?? true;
    this.maxEventBytes = options.maxEventBytes ?? 65536;
    this.seed = options.seed ?? DEFAULT_SEED;
    this.random = mulberry32(this.seed);
    this.eventIdTag =
      options.seed === undefined
        ? randomBytes(4).toString("hex")
        : Math.floor(mulberry32(this.seed ^ 0x9e3779b9)() * 0xffffffff)
            .toString(16)
            .padStart(8, "0");
    this.appservice = options.appservice;
    this.boundHost = options.host ?? "127.0.0.1";
    this.server = createServer((req, res) => this.onRequest(req, res));
    this.server.keepAliveTimeout = 30_000;
    this.server.on("connection", (socket: Socket) => {
      socket.setNoDelay(true);
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
    this.server.on("clientError", (_err, socket) => socket.destroy());
  }

  /** Starts a fake homeserver on 127.0.0.1 and a free port. */
  static async start(options: FakeHomeserverOptions = {}): Promise<FakeHomeserver> {
    const hs = new FakeHomeserver(options);
    await new Promise<void>((resolve, reject) => {
      hs.server.once("error", reject);
      hs.server.listen(options.port ?? 0, hs.boundHost, () => {
        hs.server.off("error", reject);
        resolve();
      });
    });
    const address = hs.server.address();
    if (address === null || typeof address === "string") throw new Error("FakeHomeserver: no TCP address");
    hs.boundPort = address.port;
    return hs;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Base URL, e.g. http://127.0.0.1:41234 */
  get url(): string {
    return `http://${this.boundHost}:${this.boundPort}`;
  }

  /** A snapshot of the counters. */
  get stats(): FakeHomeserverStats {
    const c = this.counters;
    return {
      requests: c.requests,
      stored: c.stored,
      deduped: c.deduped,
      rejected: c.rejected,
      faults: { ...c.faults },
    };
  }

  /** Requests currently held by `pause()`. */
  get pausedRequests(): number {
    return this.pausedQueue.length;
  }

  /** Closes the server and every socket; held requests are answered with a connection reset. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.paused = false;
    for (const hold of [...this.holds]) hold.release(false);
    this.pausedQueue.length = 0;
    // Let the released requests reset their own sockets (RST) before the rest are closed.
    await new Promise((resolve) => setImmediate(resolve));
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    this.server.closeAllConnections();
    await closed;
  }

  // ---- inspection --------------------------------------------------------------------------

  /** Stored events of one room (decoded room id), in arrival order. Empty when `record` is false. */
  roomEvents(roomId: string): StoredRoomEvent[] {
    return [...(this.eventsByRoom.get(roomId) ?? [])];
  }

  /** Stored events of every room, in arrival order. */
  allRoomEvents(): StoredRoomEvent[] {
    return [...this.events];
  }

  /** Room ids that have stored events, in order of first event. */
  rooms(): string[] {
    return [...this.eventsByRoom.keys()];
  }

  /** Users registered through `/register`. */
  registeredUsers(): string[] {
    return [...this.registered];
  }

  /** Users that joined the room through `/join`. */
  members(roomId: string): string[] {
    return [...(this.membership.get(roomId) ?? [])];
  }

  /** Marks users as registered (for `strictMasquerade`). */
  addUsers(...userIds: string[]): void {
    for (const u of userIds) this.registered.add(u);
  }

  /**
   * Polls until `predicate` holds (every 5 ms); rejects after `timeoutMs` with a message naming
   * `what` and the current counters.
   */
  async waitFor(
    predicate: () => boolean | Promise<boolean>,
    timeoutMs = 5000,
    what = "condition",
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await predicate()) return;
      if (Date.now() >= deadline) {
        throw new Error(
          `FakeHomeserver.waitFor: ${what} not met within ${timeoutMs} ms (stats: ${JSON.stringify(this.stats)})`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  // ---- control -----------------------------------------------------------------------------

  /** Forgets every cached send answer, like a Synapse restart. */
  clearDedupeCache(): void {
    this.txnCache.clear();
  }

  /**
   * Replaces the random fault configuration (`setFaults({})` turns random faults off). Rates are
   * probabilities per eligible request; their sum must not exceed 1.
   */
  setFaults(faults: FaultOptions): void {
    const reset = checkRate("rateReset", faults.rateReset);
    const r429 = checkRate("rate429", faults.rate429);
    const r500 = checkRate("rate500", faults.rate500);
    const r502 = checkRate("rate502", faults.rate502);
    const drop = checkRate("rateDropAfterProcess", faults.rateDropAfterProcess);
    if (reset + r429 + r500 + r502 + drop > 1 + 1e-9) {
      throw new RangeError("FakeHomeserver.setFaults: the fault rates add up to more than 1");
    }
    if (faults.delayMs !== undefined && !(faults.delayMs >= 0)) {
      throw new RangeError(`FakeHomeserver.setFaults: delayMs must be >= 0, got ${String(faults.delayMs)}`);
    }
    this.faults = { ...faults };
    // Cumulative thresholds: one draw per eligible request decides at most one fault.
    this.faultThresholds = {
      reset,
      r429: reset + r429,
      r500: reset + r429 + r500,
      r502: reset + r429 + r500 + r502,
      drop: reset + r429 + r500 + r502 + drop,
    };
  }

  /** Turns off random faults and delay, and drops scripted faults not yet used. */
  clearFaults(): void {
    this.setFaults({});
    this.scripted = [];
  }

  /**
   * The next `n` eligible requests get `kind` (before any random fault). Eligible: matching
   * `match`, else the `match` of `setFaults`, else the send-like PUTs.
   */
  failNext(n: number, kind: FaultKind, match?: FaultMatcher): void {
    if (!FAULT_KINDS.includes(kind))
      throw new RangeError(`FakeHomeserver.failNext: unknown fault kind ${String(kind)}`);
    if (!Number.isInteger(n) || n < 0)
      throw new RangeError(`FakeHomeserver.failNext: n must be an integer >= 0`);
    for (let i = 0; i < n; i++) this.scripted.push({ kind, match });
  }

  /**
   * Answers every send, state and redact to `roomId` with a permanent error (by default 403
   * M_FORBIDDEN, as for a room the sender is not in) until `allowRoom(roomId)`. Not a fault: it
   * is checked before faults, applies to every request, and is not counted as one.
   */
  /** Sets a room's state as if someone had sent it (served by GET /state; not a recorded event). */
  setRoomState(roomId: string, eventType: string, stateKey: string, content: object, sender: string): void {
    this.currentState.set(`${roomId}\u0000${eventType}\u0000${stateKey}`, {
      eventId: this.newEventId(),
      sender,
      canonical: canonical(content),
    });
  }

  refuseRoom(roomId: string, error: { status: number; errcode: string; error: string } = REFUSED_ROOM): void {
    this.refusedRooms.set(roomId, matrixError(error.status, error.errcode, error.error));
  }

  /** Undoes `refuseRoom`. */
  allowRoom(roomId: string): void {
    this.refusedRooms.delete(roomId);
  }

  /** Holds every request (control requests excepted) until `resume()`. */
  pause(): void {
    this.paused = true;
  }

  /** Releases held requests in arrival order. */
  resume(): void {
    this.paused = false;
    const held = this.pausedQueue.splice(0);
    for (const hold of held) hold.release(true);
  }

  /** Clears everything: recorded data, dedupe cache, state, users, counters, faults; restarts the PRNG. */
  reset(): void {
    this.requests.length = 0;
    this.toDeviceMessages.length = 0;
    this.events = [];
    this.eventsByRoom = new Map();
    this.currentState = new Map();
    this.registered = new Set();
    this.membership = new Map();
    this.txnCache = new Map();
    this.refusedRooms = new Map();
    this.counters = { requests: 0, stored: 0, deduped: 0, rejected: 0, faults: emptyFaultCounts() };
    this.random = mulberry32(this.seed);
    this.clearFaults();
  }

  /** Sets the appservice the homeserver pushes to (for `/ping` and `pushTransaction`). */
  setAppservice(target: AppserviceTarget | undefined): void {
    this.appservice = target;
  }

  /**
   * Pushes a transaction to the appservice like Synapse does:
   * `PUT {url}/_matrix/app/v1/transactions/{txnId}` with `Authorization: Bearer <hs_token>`.
   */
  async pushTransaction(
    txnId: string,
    body: object | string,
    options: { contentType?: string; timeoutMs?: number } = {},
  ): Promise<PushResult> {
    const target = this.requireAppservice();
    const res = await fetch(`${target.url}/_matrix/app/v1/transactions/${encodeURIComponent(txnId)}`, {
      method: "PUT",
      headers: {
        authorization: `Bearer ${target.hsToken}`,
        "content-type": options.contentType ?? "application/json",
      },
      body: typeof body === "string" ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, body: parsed };
  }

  private requireAppservice(): AppserviceTarget {
    if (!this.appservice)
      throw new Error("FakeHomeserver: no appservice configured (option appservice / setAppservice)");
    return this.appservice;
  }

  // ---- request handling --------------------------------------------------------------------

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    req.on("error", () => undefined);
    res.on("error", () => undefined);
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    const isControl = this.options.control === true && path.startsWith("/_fake/");
    if (!isControl) this.counters.requests++;

    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= MAX_REQUEST_BYTES) chunks.push(chunk);
    });
    req.on("end", () => {
      const tooLarge = bytes > MAX_REQUEST_BYTES;
      const body =
        chunks.length === 0
          ? ""
          : chunks.length === 1
            ? (chunks[0] as Buffer).toString("utf8")
            : Buffer.concat(chunks).toString("utf8");
      const task = isControl
        ? this.handleControl(req, res, path, q < 0 ? "" : url.slice(q + 1), body)
        : this.handle(req, res, url, path, q < 0 ? undefined : url.slice(q + 1), body, bytes, tooLarge);
      task.catch((err: unknown) => {
        if (!res.headersSent && !res.destroyed) {
          this.write(res, undefined, matrixError(500, "M_UNKNOWN", `FakeHomeserver bug: ${String(err)}`));
        }
      });
    });
  }

  private async handle(
    req: IncomingMessage,
    res: ServerResponse,
    url: string,
    path: string,
    queryString: string | undefined,
    body: string,
    bodyBytes: number,
    tooLarge: boolean,
  ): Promise<void> {
    const method = req.method ?? "GET";
    const query = queryString === undefined ? undefined : new URLSearchParams(queryString);
    let rec: RecordedRequest | undefined;
    if (this.record) {
      const q: Record<string, string> = {};
      if (query) for (const [k, v] of query) if (!(k in q)) q[k] = v;
      rec = { method, url, path, query: q, body, status: undefined, fault: undefined };
      this.requests.push(rec);
    }

    if (this.paused && !(await this.holdPaused())) return this.destroy(req);
    if (this.stopped) return this.destroy(req);

    const routed = this.route(method, path);
    if ("status" in routed) return this.reject(res, rec, routed);
    const route = routed;

    if (route.kind !== "versions") {
      const authError = this.checkAuth(req);
      if (authError) return this.reject(res, rec, authError);
    }

    const sender = query?.get("user_id") ?? this.botUserId;
    if (this.options.strictMasquerade && sender !== this.botUserId && !this.registered.has(sender)) {
      return this.reject(
        res,
        rec,
        matrixError(403, "M_FORBIDDEN", `Application service has not registered this user (${sender})`),
      );
    }

    const refused = "roomId" in route ? this.refusedRooms.get(route.roomId) : undefined;
    if (refused) return this.reject(res, rec, refused);

    // Faults.
    let dropAfterProcess = false;
    const eligibleByDefault = SEND_LIKE.has(route.kind);
    const eligible = this.faults.match ? this.faults.match(path, { method, url }) : eligibleByDefault;
    if (this.faults.delayMs && eligible) {
      if (!(await this.holdFor(this.faults.delayMs))) return this.destroy(req);
    }
    const fault = this.pickFault(path, method, url, eligible);
    if (fault) {
      this.counters.faults[fault]++;
      if (rec) rec.fault = fault;
      switch (fault) {
        case "reset":
          return this.destroy(req);
        case "hang":
          await this.holdFor(undefined);
          return this.destroy(req);
        case "429":
          return this.write(res, rec, this.rateLimited());
        case "500":
          return this.write(res, rec, matrixError(500, "M_UNKNOWN", "Internal server error (injected)"));
        case "502":
          return this.write(res, rec, {
            status: 502,
            body: "<html><body><h1>502 Bad Gateway</h1></body></html>\n",
            headers: { "content-type": "text/html" },
          });
        case "dropAfterProcess":
          dropAfterProcess = true;
          break;
      }
    }

    const ctx: RequestContext = {
      method,
      url,
      path,
      query,
      body,
      bodyBytes,
      tooLarge,
      route,
      sender,
      deviceId: query?.get("device_id") ?? query?.get("org.matrix.msc3202.device_id") ?? undefined,
    };
    const answer = await this.process(ctx);
    if (answer.cacheKey !== undefined) this.txnCache.set(answer.cacheKey, answer.body);
    if (answer.status >= 400) this.counters.rejected++;
    if (dropAfterProcess) return this.destroy(req);
    this.write(res, rec, answer);
  }

  private pickFault(path: string, method: string, url: string, eligible: boolean): FaultKind | undefined {
    const next = this.scripted[0];
    if (next) {
      if (next.match ? next.match(path, { method, url }) : eligible) {
        this.scripted.shift();
        return next.kind;
      }
    }
    if (!eligible) return undefined;
    const t = this.faultThresholds;
    if (t.drop === 0) return undefined;
    const u = this.random();
    if (u < t.reset) return "reset";
    if (u < t.r429) return "429";
    if (u < t.r500) return "500";
    if (u < t.r502) return "502";
    if (u < t.drop) return "dropAfterProcess";
    return undefined;
  }

  private rateLimited(): Answer {
    const ms = this.faults.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS;
    const headers = { "retry-after": String(Math.ceil(ms / 1000)) };
    const text = "Too Many Requests (injected)";
    return this.faults.retryAfterHeaderOnly
      ? { ...matrixError(429, "M_LIMIT_EXCEEDED", text), headers }
      : { ...matrixError(429, "M_LIMIT_EXCEEDED", text, { retry_after_ms: ms }), headers };
  }

  private checkAuth(req: IncomingMessage): Answer | undefined {
    if (this.asToken === undefined) return undefined;
    const header = req.headers.authorization;
    if (header === undefined || !header.startsWith("Bearer ")) {
      return matrixError(401, "M_MISSING_TOKEN", "Missing access token.");
    }
    if (header.slice(7) !== this.asToken) {
      return matrixError(403, "M_UNKNOWN_TOKEN", "Unrecognised access token.", { soft_logout: false });
    }
    return undefined;
  }

  private route(method: string, path: string): Route | Answer {
    if (path === "/_matrix/client/versions") return method === "GET" ? { kind: "versions" } : badMethod();

    let parts: string[];
    try {
      parts = path.split("/").map(decodeURIComponent);
    } catch {
      return matrixError(400, "M_INVALID_PARAM", "Malformed percent-encoding in the path");
    }
    // parts[0] is "" (leading slash).
    if (parts[1] !== "_matrix" || parts[2] !== "client") return notFound();

    if (parts[3] === "v1") {
      // /_matrix/client/v1/appservice/{id}/ping
      if (parts.length === 7 && parts[4] === "appservice" && parts[6] === "ping") {
        return method === "POST" ? { kind: "ping", appserviceId: parts[5] as string } : badMethod();
      }
      return notFound();
    }
    if (parts[3] !== "v3") return notFound();
    const n = parts.length;
    const p4 = parts[4];

    if (p4 === "rooms" && n >= 7) {
      const roomId = parts[5] as string;
      const action = parts[6];
      if (action === "send" && n === 9) {
        return method === "PUT"
          ? { kind: "send", roomId, eventType: parts[7] as string, txnId: parts[8] as string }
          : badMethod();
      }
      if (action === "state" && (n === 8 || n === 9)) {
        const target = { roomId, eventType: parts[7] as string, stateKey: parts[8] ?? "" };
        if (method === "GET") return { kind: "getState", ...target };
        return method === "PUT" ? { kind: "state", ...target } : badMethod();
      }
      if (action === "redact" && n === 9) {
        return method === "PUT"
          ? { kind: "redact", roomId, eventId: parts[7] as string, txnId: parts[8] as string }
          : badMethod();
      }
      if (action === "join" && n === 7) {
        return method === "POST" ? { kind: "join", target: roomId } : badMethod();
      }
      return notFound();
    }
    if (p4 === "sendToDevice" && n === 7) {
      return method === "PUT"
        ? { kind: "toDevice", eventType: parts[5] as string, txnId: parts[6] as string }
        : badMethod();
    }
    if (p4 === "join" && n === 6) {
      return method === "POST" ? { kind: "join", target: parts[5] as string } : badMethod();
    }
    if (p4 === "register" && n === 5) return method === "POST" ? { kind: "register" } : badMethod();
    if (p4 === "account" && n === 6 && parts[5] === "whoami") {
      return method === "GET" ? { kind: "whoami" } : badMethod();
    }
    return notFound();
  }

  private async process(ctx: RequestContext): Promise<Answer> {
    const route = ctx.route;
    switch (route.kind) {
      case "versions":
        return ok({ versions: ["v1.11", "v1.12", "v1.13"], unstable_features: {} });
      case "whoami":
        return ok({
          user_id: ctx.sender,
          is_guest: false,
          ...(ctx.deviceId === undefined ? {} : { device_id: ctx.deviceId }),
        });
      case "register":
        return this.register(ctx);
      case "join":
        return this.join(ctx, route.target);
      case "ping":
        return this.ping(ctx, route.appserviceId);
      case "getState": {
        const current = this.currentState.get(
          `${route.roomId}\u0000${route.eventType}\u0000${route.stateKey}`,
        );
        if (!current) return matrixError(404, "M_NOT_FOUND", "Event not found.");
        const content = JSON.parse(current.canonical) as Record<string, unknown>;
        return ok(
          ctx.url.includes("format=event")
            ? {
                type: route.eventType,
                state_key: route.stateKey,
                sender: current.sender,
                event_id: current.eventId,
                room_id: route.roomId,
                content,
              }
            : content,
        );
      }
      case "send":
      case "redact":
      case "toDevice": {
        // Synapse looks the transaction up before it even parses the body.
        const cached = this.txnCache.get(ctx.path);
        if (cached !== undefined) {
          this.counters.deduped++;
          return { status: 200, body: cached };
        }
        const content = this.parseContent(ctx);
        if ("status" in content) return content;
        return this.store(ctx, route, content.value);
      }
      case "state": {
        const content = this.parseContent(ctx);
        if ("status" in content) return content;
        return this.store(ctx, route, content.value);
      }
    }
  }

  private parseContent(ctx: RequestContext): Answer | { value: Record<string, unknown> } {
    if (ctx.tooLarge || ctx.bodyBytes > this.maxEventBytes) {
      return matrixError(
        413,
        "M_TOO_LARGE",
        `Event is too large (${ctx.bodyBytes} > ${this.maxEventBytes} bytes)`,
      );
    }
    let value: unknown;
    try {
      value = JSON.parse(ctx.body);
    } catch {
      return matrixError(400, "M_NOT_JSON", "Content not JSON.");
    }
    if (!isPlainObject(value)) return matrixError(400, "M_BAD_JSON", "Content must be a JSON object.");
    return { value };
  }

  private newEventId(): string {
    return `$${this.eventIdTag}_${this.nextEvent++}`;
  }

  private store(
    ctx: RequestContext,
    route: Extract<Route, { kind: "send" | "state" | "redact" | "toDevice" }>,
    content: Record<string, unknown>,
  ): Answer {
    if (route.kind === "toDevice") {
      const messages = content.messages;
      if (!isPlainObject(messages) || !Object.values(messages).every(isPlainObject)) {
        return matrixError(400, "M_BAD_JSON", "`messages` must be an object of objects");
      }
      this.counters.stored++;
      if (this.record) {
        this.toDeviceMessages.push({
          type: route.eventType,
          txnId: route.txnId,
          sender: ctx.sender,
          deviceId: ctx.deviceId,
          messages: messages as Record<string, Record<string, unknown>>,
        });
      }
      return { status: 200, body: "{}", cacheKey: ctx.path };
    }

    if (route.kind === "state") {
      const key = `${route.roomId}\u0000${route.eventType}\u0000${route.stateKey}`;
      const canon = canonical(content);
      const current = this.currentState.get(key);
      if (current && current.sender === ctx.sender && current.canonical === canon) {
        this.counters.deduped++;
        return ok({ event_id: current.eventId });
      }
      const eventId = this.newEventId();
      this.currentState.set(key, { eventId, sender: ctx.sender, canonical: canon });
      this.pushEvent({
        eventId,
        roomId: route.roomId,
        kind: "state",
        type: route.eventType,
        txnId: undefined,
        stateKey: route.stateKey,
        sender: ctx.sender,
        deviceId: ctx.deviceId,
        content,
      });
      return ok({ event_id: eventId });
    }

    const eventId = this.newEventId();
    if (route.kind === "redact") {
      this.pushEvent({
        eventId,
        roomId: route.roomId,
        kind: "redaction",
        type: "m.room.redaction",
        txnId: route.txnId,
        redacts: route.eventId,
        sender: ctx.sender,
        deviceId: ctx.deviceId,
        content,
      });
    } else {
      this.pushEvent({
        eventId,
        roomId: route.roomId,
        kind: "message",
        type: route.eventType,
        txnId: route.txnId,
        sender: ctx.sender,
        deviceId: ctx.deviceId,
        content,
      });
    }
    return { status: 200, body: JSON.stringify({ event_id: eventId }), cacheKey: ctx.path };
  }

  private pushEvent(event: StoredRoomEvent): void {
    this.counters.stored++;
    if (!this.record) return;
    this.events.push(event);
    let list = this.eventsByRoom.get(event.roomId);
    if (!list) this.eventsByRoom.set(event.roomId, (list = []));
    list.push(event);
  }

  private register(ctx: RequestContext): Answer {
    let body: unknown;
    try {
      body = JSON.parse(ctx.body || "{}");
    } catch {
      return matrixError(400, "M_NOT_JSON", "Content not JSON.");
    }
    if (!isPlainObject(body)) return matrixError(400, "M_BAD_JSON", "Content must be a JSON object.");
    if (body.type !== "m.login.application_service") {
      return matrixError(
        400,
        "M_UNKNOWN",
        "Invalid login submission: expected type m.login.application_service",
      );
    }
    const username = body.username;
    if (typeof username !== "string" || username === "") {
      return matrixError(400, "M_INVALID_PARAM", "Invalid username");
    }
    if (!/^[a-z0-9._=\-/+]+$/.test(username)) {
      return matrixError(
        400,
        "M_INVALID_USERNAME",
        "User ID can only contain characters a-z, 0-9, or '=_-./+'",
      );
    }
    const userId = `@${username}:${this.serverName}`;
    const ns = this.options.userNamespace;
    if (ns && !ns.test(userId) && userId !== this.botUserId) {
      return matrixError(400, "M_EXCLUSIVE", "This user ID is not in the application service's namespace");
    }
    if (this.registered.has(userId) || userId === this.botUserId) {
      return matrixError(400, "M_USER_IN_USE", "User ID already taken.");
    }
    this.registered.add(userId);
    const deviceId = typeof body.device_id === "string" ? body.device_id : "FAKEDEVICE";
    return ok(
      body.inhibit_login === true
        ? { user_id: userId, home_server: this.serverName }
        : {
            user_id: userId,
            home_server: this.serverName,
            device_id: deviceId,
            access_token: `syt_fake_${username}`,
          },
    );
  }

  private join(ctx: RequestContext, target: string): Answer {
    let roomId = target;
    if (target.startsWith("#")) {
      roomId = `!${target.slice(1).replace(/:.*$/, "")}:${this.serverName}`;
    } else if (!target.startsWith("!")) {
      return matrixError(400, "M_INVALID_PARAM", `${target} was not legal room ID or room alias`);
    }
    let members = this.membership.get(roomId);
    if (!members) this.membership.set(roomId, (members = new Set()));
    members.add(ctx.sender);
    return ok({ room_id: roomId });
  }

  private async ping(ctx: RequestContext, appserviceId: string): Promise<Answer> {
    const target = this.appservice;
    if (target?.id !== undefined && target.id !== appserviceId) {
      return matrixError(403, "M_FORBIDDEN", "Provided token is not the same as the appservice's token");
    }
    if (!target) return matrixError(400, "M_URL_NOT_SET", "Application service URL is not configured.");
    let txn: unknown;
    try {
      txn = ctx.body ? (JSON.parse(ctx.body) as Record<string, unknown>).transaction_id : undefined;
    } catch {
      return matrixError(400, "M_NOT_JSON", "Content not JSON.");
    }
    const started = Date.now();
    try {
      const res = await fetch(`${target.url}/_matrix/app/v1/ping`, {
        method: "POST",
        headers: { authorization: `Bearer ${target.hsToken}`, "content-type": "application/json" },
        body: JSON.stringify(txn === undefined ? {} : { transaction_id: txn }),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await res.text();
      if (res.status !== 200) {
        return matrixError(502, "M_BAD_STATUS", "Ping returned error status", {
          status: res.status,
          body: text,
        });
      }
    } catch (err) {
      const timeout = err instanceof Error && err.name === "TimeoutError";
      return timeout
        ? matrixError(504, "M_CONNECTION_TIMEOUT", "Timeout while pinging appservice")
        : matrixError(502, "M_CONNECTION_FAILED", `Failed to ping appservice: ${String(err)}`);
    }
    return ok({ duration_ms: Date.now() - started });
  }

  // ---- holds, answers ----------------------------------------------------------------------

  private holdPaused(): Promise<boolean> {
    return new Promise((resolve) => {
      const hold: Hold = {
        timer: undefined,
        release: (proceed) => {
          this.holds.delete(hold);
          resolve(proceed && !this.stopped);
        },
      };
      this.holds.add(hold);
      this.pausedQueue.push(hold);
    });
  }

  /** Waits `ms` (forever when undefined); resolves false when the server stops meanwhile. */
  private holdFor(ms: number | undefined): Promise<boolean> {
    return new Promise((resolve) => {
      const hold: Hold = {
        timer: undefined,
        release: (proceed) => {
          if (hold.timer) clearTimeout(hold.timer);
          this.holds.delete(hold);
          resolve(proceed && !this.stopped);
        },
      };
      if (ms !== undefined) hold.timer = setTimeout(() => hold.release(true), ms);
      this.holds.add(hold);
    });
  }

  private reject(res: ServerResponse, rec: RecordedRequest | undefined, answer: Answer): void {
    this.counters.rejected++;
    this.write(res, rec, answer);
  }

  private write(res: ServerResponse, rec: RecordedRequest | undefined, answer: Answer): void {
    if (rec) rec.status = answer.status;
    if (res.destroyed) return;
    const headers: Record<string, string | number> = {
      ...JSON_HEADERS,
      ...answer.headers,
      "content-length": Buffer.byteLength(answer.body),
    };
    res.writeHead(answer.status, headers);
    res.end(answer.body);
  }

  /** Resets the connection (TCP RST) without answering. */
  private destroy(req: IncomingMessage): void {
    const socket = req.socket;
    if (socket.destroyed) return;
    socket.resetAndDestroy();
  }

  // ---- control API (fakeHomeserverMain) ----------------------------------------------------

  private async handleControl(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    _queryString: string,
    body: string,
  ): Promise<void> {
    const method = req.method ?? "GET";
    const answer = (() => {
      const parse = (): Record<string, unknown> => {
        const value: unknown = body ? JSON.parse(body) : {};
        if (!isPlainObject(value)) throw new TypeError("body must be a JSON object");
        return value;
      };
      try {
        if (method === "POST") {
          switch (path) {
            case "/_fake/pause":
              this.pause();
              return ok({});
            case "/_fake/resume":
              this.resume();
              return ok({});
            case "/_fake/faults": {
              const { match: _ignored, ...faults } = parse();
              this.setFaults(faults as SerializableFaultOptions);
              return ok({});
            }
            case "/_fake/failNext": {
              const { n, kind } = parse();
              this.failNext(typeof n === "number" ? n : 1, kind as FaultKind);
              return ok({});
            }
            case "/_fake/clearFaults":
              this.clearFaults();
              return ok({});
            case "/_fake/clearDedupeCache":
              this.clearDedupeCache();
              return ok({});
            case "/_fake/reset":
              this.reset();
              return ok({});
          }
        } else if (method === "GET") {
          if (path === "/_fake/stats") return ok(this.stats);
          if (path === "/_fake/requests") return ok({ requests: this.requests });
          if (path === "/_fake/toDevice") return ok({ messages: this.toDeviceMessages });
          if (path === "/_fake/events") return ok({ events: this.events });
          const m = /^\/_fake\/rooms\/([^/]+)\/events$/.exec(path);
          if (m) return ok({ events: this.eventsByRoom.get(decodeURIComponent(m[1] as string)) ?? [] });
        }
        return matrixError(404, "M_UNRECOGNIZED", `Unknown control endpoint ${method} ${path}`);
      } catch (err) {
        return matrixError(400, "M_BAD_JSON", err instanceof Error ? err.message : String(err));
      }
    })();
    this.write(res, undefined, answer);
  }
}

function notFound(): Answer {
  return matrixError(404, "M_UNRECOGNIZED", "Unrecognized request");
}

function badMethod(): Answer {
  return matrixError(405, "M_UNRECOGNIZED", "Unrecognized request");
}
