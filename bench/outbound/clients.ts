// The four outbound clients of the side-by-side benchmark, each used as its documentation shows:
// a `send(room, n)` that resolves when the homeserver has answered (or, for matrix-courier, an
// `enqueue` that resolves at the commit, delivery reported by its "sent" event).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pool } from "undici";
import { MatrixClient } from "../../src/matrix/MatrixClient.ts";
import { Outbox } from "../../src/outbox/Outbox.ts";
import { SqliteOutboxStore } from "../../src/store/sqlite/SqliteOutboxStore.ts";
import { openSqlite } from "../../src/store/sqlite/SqliteDatabase.ts";
import { WalCheckpointer } from "../../src/store/sqlite/WalCheckpointer.ts";
import { roomId, userId } from "../../src/ids.ts";
import { importPeer } from "../peers/loadPeers.ts";

export const CLIENTS = [
  "matrix-courier",
  "matrix-bot-sdk",
  "matrix-appservice-bridge",
  "undici-request-loop",
] as const;
export type ClientName = (typeof CLIENTS)[number];

/** The content of message n of a run: `seq` lets the homeserver's side check order and doubles. */
export const messageContent = (run: string, n: number) => ({
  msgtype: "m.text",
  body: `benchmark message number ${n}`,
  "bench.run": run,
  "bench.seq": n,
});

export interface ClientSetup {
  url: string;
  token: string;
  concurrency: number;
  /** The appservice's own user. @default "@bot:bench" (the fake homeserver's) */
  botUserId?: string;
}

/** A client that sends one message and resolves once the homeserver answered it. */
export interface DirectClient {
  kind: "direct";
  send(room: string, run: string, n: number): Promise<void>;
  close(): Promise<void>;
}

/** matrix-courier: enqueue resolves at the commit; `delivered` once every message was answered. */
export interface OutboxClient {
  kind: "outbox";
  enqueue(room: string, run: string, n: number): Promise<void>;
  delivered(): Promise<void>;
  /** Send latencies (enqueue to answer) since the last call, in ms. */
  takeLatencies(): number[];
  close(): Promise<void>;
}

/** The retry_after_ms a peer's error carries, if it is a 429 (each library words it its own way). */
export function retryAfterMs(err: unknown): number | undefined {
  const e = err as { retryAfterMs?: unknown; body?: { retry_after_ms?: unknown }; statusCode?: unknown };
  if (typeof e?.retryAfterMs === "number") return e.retryAfterMs;
  if (typeof e?.body?.retry_after_ms === "number") return e.body.retry_after_ms;
  return undefined;
}

export async function createClient(
  name: ClientName,
  setup: ClientSetup,
): Promise<DirectClient | OutboxClient> {
  switch (name) {
    case "matrix-courier":
      return courier(setup);
    case "matrix-bot-sdk":
      return botSdk(setup);
    case "matrix-appservice-bridge":
      return bridgeIntent(setup);
    case "undici-request-loop":
      return undiciLoop(setup);
  }
}

function undiciLoop({ url, token, concurrency }: ClientSetup): DirectClient {
  const pool = new Pool(url, { connections: concurrency, keepAliveTimeout: 30_000 });
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  return {
    kind: "direct",
    async send(room, run, n) {
      const res = await pool.request({
        method: "PUT",
        // The txnId is fixed by the message, so a caller's retry of it is deduplicated.
        path: `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/${run}.${n}`,
        headers,
        body: JSON.stringify(messageContent(run, n)),
      });
      const body = (await res.body.json()) as { retry_after_ms?: number };
      if (res.statusCode !== 200) {
        throw Object.assign(new Error(`undici loop got ${res.statusCode} ${JSON.stringify(body)}`), {
          body,
          statusCode: res.statusCode,
        });
      }
    },
    close: () => pool.close(),
  };
}

interface BotSdkModule {
  MatrixClient: new (
    url: string,
    token: string,
  ) => {
    sendMessage(roomId: string, content: object): Promise<string>;
  };
  LogService: { setLogger(logger: object): void };
}

// Both bot-sdks log every failed request; the fault runs would print thousands of lines. Their
// logging is switched off (a small saving for them: matrix-courier's logger is off too).
const silent = { info() {}, warn() {}, error() {}, debug() {}, trace() {} };

async function botSdk({ url, token }: ClientSetup): Promise<DirectClient> {
  const sdk = await importPeer<BotSdkModule>("matrix-bot-sdk");
  sdk.LogService.setLogger(silent);
  const client = new sdk.MatrixClient(url, token);
  return {
    kind: "direct",
    send: async (room, run, n) => void (await client.sendMessage(room, messageContent(run, n))),
    close: async () => undefined,
  };
}

interface BridgeModule {
  Bridge: new (opts: object) => {
    initialise(): Promise<void>;
    getIntent(): { sendMessage(roomId: string, content: object): Promise<unknown> };
  };
  AppServiceRegistration: { fromObject(reg: object): unknown };
  Logger: { configure(opts: object): void };
}

async function bridgeIntent({ url, token }: ClientSetup): Promise<DirectClient> {
  const mab = await importPeer<BridgeModule>("matrix-appservice-bridge");
  mab.Logger.configure({ console: "off" });
  (await importPeer<BotSdkModule>("@vector-im/matrix-bot-sdk")).LogService.setLogger(silent);
  const registration = mab.AppServiceRegistration.fromObject({
    id: "bench",
    url: null,
    as_token: token,
    hs_token: "bench-hs-token",
    sender_localpart: "bot",
    namespaces: { users: [{ exclusive: true, regex: "@bench_.*:bench" }], rooms: [], aliases: [] },
  });
  const bridge = new mab.Bridge({
    homeserverUrl: url,
    domain: "bench",
    registration,
    controller: { onEvent: () => undefined },
    disableStores: true,
  });
  // Not run(): the benchmark sends only, so the appservice listener is not started.
  await bridge.initialise();
  const intent = bridge.getIntent();
  return {
    kind: "direct",
    send: async (room, run, n) => void (await intent.sendMessage(room, messageContent(run, n))),
    close: async () => undefined,
  };
}

async function courier({
  url,
  token,
  concurrency,
  botUserId = "@bot:bench",
}: ClientSetup): Promise<OutboxClient> {
  const dir = mkdtempSync(join(tmpdir(), "courier-bench-"));
  const path = join(dir, "outbox.sqlite");
  const db = openSqlite({ path });
  const store = new SqliteOutboxStore(db);
  // As the runtime does: WAL checkpoints in a worker, not inside the writer's commits.
  const checkpointer = new WalCheckpointer(db, path);
  const client = new MatrixClient({ homeserverUrl: url, accessToken: token, connections: concurrency });
  const outbox = new Outbox({
    store,
    transport: client,
    appserviceId: "bench",
    botUserId: userId(botUserId),
    maxConcurrency: concurrency,
    rate: { perSecond: 1e9, burst: 1e9 },
    // The fault runs inject 500s and resets: a short backoff, as a bridge in a hurry would set.
    retry: { baseMs: 50, capMs: 2_000 },
  });
  let latencies: number[] = [];
  outbox.on("sent", (_row, _eventId, ms) => latencies.push(ms));
  await outbox.start();
  return {
    kind: "outbox",
    async enqueue(room, run, n) {
      await outbox.enqueue({
        kind: "send",
        roomId: roomId(room),
        eventType: "m.room.message",
        content: messageContent(run, n),
        cause: `${run}.${n}`,
        ordinal: 0,
      });
    },
    delivered: () => outbox.onIdle(),
    takeLatencies() {
      const taken = latencies;
      latencies = [];
      return taken;
    },
    async close() {
      await outbox.stop();
      await checkpointer.stop();
      await store.close();
      db.close();
      await client.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
