// Store faults during a burst: the framework's SQLite file fills up, or turns read-only, or (for
// any store, e.g. a database server that went away) every write through the store interface
// fails. What the homeserver pushes meanwhile is answered 500, never 200; plugin sends reject
// with JournalUnavailableError; events whose handlers could not journal their sends stay pending
// (not dead-lettered); rows journaled before the fault keep being sent. When the fault clears,
// without a restart, everything is delivered exactly once, in order per room.
//
// Injected at the SQLite level on the real file (our connection): `PRAGMA max_page_count` set to
// the current size gives SQLITE_FULL on any write that needs a page; `PRAGMA query_only` gives
// SQLITE_READONLY on every write. (chmod cannot do it: the file is already open; a full tmpfs or
// loop mount needs privileges.) And at the store interface, for stores that are not SQLite.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DatabaseSync } from "node:sqlite";
import { pino } from "pino";
import { createAppserviceApp, listen } from "../../src/inbound/AppserviceServer.ts";
import { JournalUnavailableError } from "../../src/errors.ts";
import { userId, roomId } from "../../src/ids.ts";
import { MatrixClient } from "../../src/matrix/MatrixClient.ts";
import { Outbox } from "../../src/outbox/Outbox.ts";
import { Dispatcher } from "../../src/inbound/Dispatcher.ts";
import { definePlugin } from "../../src/plugins/definePlugin.ts";
import { PluginHost } from "../../src/plugins/PluginHost.ts";
import type { InboundJournal } from "../../src/inbound/InboundJournal.ts";
import type { OutboxStore } from "../../src/store/OutboxStore.ts";
import { openSqlite } from "../../src/store/sqlite/SqliteDatabase.ts";
import { SqliteInboundJournal } from "../../src/store/sqlite/SqliteInboundJournal.ts";
import { SqliteOutboxStore } from "../../src/store/sqlite/SqliteOutboxStore.ts";
import { SqlitePluginData } from "../../src/store/sqlite/SqlitePluginData.ts";
import { FakeHomeserver } from "../support/FakeHomeserver.ts";

const AS_TOKEN = "as_token_store_faults";
const HS_TOKEN = "hs_token_store_faults";
const ROOM_A = "!a:fake.test";
const ROOM_B = "!b:fake.test";
const ALICE = "@alice:fake.test";
// Larger than a page (4 KiB): journaling it always needs new pages, so "disk full" always bites.
const PAD = "p".repeat(5000);

/** Turns the store's writes off and on. */
interface Fault {
  readonly name: string;
  break(db: DatabaseSync): void;
  heal(db: DatabaseSync): void;
  /** Interface-level faults wrap the stores; SQLite-level ones act on the connection. */
  readonly wrapsStores: boolean;
}

const interfaceSwitch = { broken: false };
let savedMaxPages = 0;
const FAULTS: Fault[] = [
  {
    name: "disk full (SQLite max_page_count: SQLITE_FULL)",
    wrapsStores: false,
    break(db) {
      savedMaxPages = (db.prepare("PRAGMA max_page_count").get() as { max_page_count: number })
        .max_page_count;
      const { page_count } = db.prepare("PRAGMA page_count").get() as { page_count: number };
      db.exec(`PRAGMA max_page_count = ${page_count}`);
    },
    heal(db) {
      db.exec(`PRAGMA max_page_count = ${savedMaxPages}`);
    },
  },
  {
    name: "read-only database (SQLite query_only: SQLITE_READONLY)",
    wrapsStores: false,
    break: (db) => db.exec("PRAGMA query_only = 1"),
    heal: (db) => db.exec("PRAGMA query_only = 0"),
  },
  {
    name: "every write through the store interfaces fails",
    wrapsStores: true,
    break: () => void (interfaceSwitch.broken = true),
    heal: () => void (interfaceSwitch.broken = false),
  },
];

const injected = () => Promise.reject(new Error("injected: the store is unavailable"));

function faultyOutboxStore(inner: OutboxStore): OutboxStore {
  const write =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> =>
      interfaceSwitch.broken ? injected() : fn(...args);
  return {
    insert: write((rows) => inner.insert(rows)),
    settle: write((s) => inner.settle(s)),
    requeue: write((ids) => inner.requeue(ids)),
    drop: write((ids) => inner.drop(ids)),
    prune: write((before) => inner.prune(before)),
    flush: write(() => inner.flush()),
    pendingLanes: () => inner.pendingLanes(),
    loadLane: (lane, after, limit) => inner.loadLane(lane, after, limit),
    get: (txnId) => inner.get(txnId),
    list: (filter) => inner.list(filter),
    laneStats: () => inner.laneStats(),
    totals: () => inner.totals(),
  };
}

function faultyInboundJournal(inner: InboundJournal): InboundJournal {
  return {
    journal: (txnId, items) => (interfaceSwitch.broken ? injected() : inner.journal(txnId, items)),
    record: (batch) => (interfaceSwitch.broken ? injected() : inner.record(batch)),
    pending: (after, limit) => inner.pending(after, limit),
    pendingInLane: (lane, after, upTo, limit) => inner.pendingInLane(lane, after, upTo, limit),
    lastSeq: () => inner.lastSeq(),
    prune: (before) => (interfaceSwitch.broken ? injected() : inner.prune(before)),
    list: (filter) => inner.list(filter),
    totals: () => inner.totals(),
  };
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const message = (n: number | string, room: string) => ({
  type: "m.room.message",
  room_id: room,
  sender: ALICE,
  event_id: `$m${n}`,
  origin_server_ts: 1_700_000_000_000,
  content: { msgtype: "m.text", body: `m${n}`, pad: PAD },
});

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.each(FAULTS)("store fault: $name", (fault) => {
  test("inbound answered 500, sends rejected loudly, nothing committed lost; healed without a restart, all delivered once, in order", async () => {
    const dir = mkdtempSync(join(tmpdir(), "courier-store-faults-"));
    const db = openSqlite({ path: join(dir, "courier.sqlite") });
    const realOutboxStore = new SqliteOutboxStore(db);
    const realJournal = new SqliteInboundJournal(db);
    const outboxStore = fault.wrapsStores ? faultyOutboxStore(realOutboxStore) : realOutboxStore;
    const journal = fault.wrapsStores ? faultyInboundJournal(realJournal) : realJournal;
    const logger = pino({ level: "silent" });
    const hs = await FakeHomeserver.start({ asToken: AS_TOKEN, seed: 3 });
    const client = new MatrixClient({
      homeserverUrl: hs.url,
      accessToken: AS_TOKEN,
      serverName: hs.serverName,
    });
    const outbox = new Outbox({
      store: outboxStore,
      transport: client,
      appserviceId: "faults",
      botUserId: userId(hs.botUserId),
      rate: { perSecond: 1e6, burst: 1e6 },
      retry: { baseMs: 20, capMs: 200 },
      logger,
    });
    const gate = deferred();
    let gatedRuns = 0;
    const host = new PluginHost({
      outbox,
      data: new SqlitePluginData({ path: ":memory:" }),
      logger,
      botUserId: hs.botUserId,
      isOwnUser: (id) => id === hs.botUserId,
      intent: () => {
        throw new Error("not used");
      },
      handlerTimeoutMs: 10_000,
      maxAttempts: 3,
      retryBaseMs: 10,
    });
    await host.load(
      definePlugin({
        name: "replies",
        setup(bot) {
          bot.on<{ body: string }>("m.room.message", async (ctx) => {
            if (ctx.event.content.body === "mgated") {
              await gate.promise;
              gatedRuns++;
            }
            for (const k of [0, 1]) {
              await ctx.send(ctx.roomId, {
                msgtype: "m.notice",
                body: `re ${ctx.event.content.body} #${k}`,
                pad: PAD,
              });
            }
          });
        },
      }),
      {},
    );
    const dispatcher = new Dispatcher({ journal, runner: host, logger, maxConcurrency: 4 });
    const app = createAppserviceApp({
      hsToken: HS_TOKEN,
      journal,
      onJournaled: () => dispatcher.wake(),
      logger,
    });
    await host.start();
    await outbox.start();
    dispatcher.start();
    const server = await listen(app, { port: 0 });
    hs.setAppservice({ url: `http://127.0.0.1:${server.port}`, hsToken: HS_TOKEN });
    const push = (txnId: string, events: object[]) => hs.pushTransaction(txnId, { events });
    const replies = () => hs.allRoomEvents().filter((e) => String(e.content.body).startsWith("re "));

    try {
      // Healthy: 12 events journaled and handled; their replies journaled but held by the
      // homeserver, so they are still to be sent when the store breaks. One more event waits at a gate.
      hs.pause();
      const before: Array<ReturnType<typeof message>> = [];
      for (let t = 0; t < 4; t++) {
        const events = [0, 1, 2].map((i) => message(t * 3 + i + 1, (t * 3 + i) % 2 ? ROOM_B : ROOM_A));
        before.push(...events);
        expect((await push(`t${t}`, events)).status).toBe(200);
      }
      expect((await push("gated", [message("gated", ROOM_A)])).status).toBe(200);
      await until("12 events handled", async () => (await realJournal.totals()).done === 12);

      fault.break(db);
      hs.resume();

      // Pushed during the fault: refused with 500 (the homeserver will resend), never 200.
      const during = [0, 1, 2, 3].map((t) => [message(20 + 2 * t, ROOM_A), message(21 + 2 * t, ROOM_B)]);
      for (const [t, events] of during.entries()) {
        const answer = await push(`f${t}`, events);
        expect(answer.status).toBe(500);
        expect(answer.body).toMatchObject({ errcode: "M_UNKNOWN" });
      }
      // A send from a plugin (or a webhook) is refused loudly, with a Matrix errcode.
      const refused = outbox.cause("direct").send(roomId(ROOM_B), { body: "direct", pad: PAD });
      await expect(refused).rejects.toBeInstanceOf(JournalUnavailableError);
      await expect(refused).rejects.toMatchObject({
        code: "COURIER_JOURNAL_UNAVAILABLE",
        errcode: "M_UNKNOWN",
        status: 503,
      });
      // A handler whose sends cannot be journaled: its event stays pending, it is not given up.
      gate.resolve();
      await until("the gated handler to run twice", () => gatedRuns >= 2);
      expect((await realJournal.totals()).dead).toBe(0);
      // What was journaled before the fault is still sent.
      await until("the 24 replies journaled before the fault", () => replies().length === 24);
      expect(replies().some((e) => String(e.content.body).includes("gated"))).toBe(false);

      fault.heal(db);

      // The homeserver resends what it was refused; the gated event runs again by itself.
      for (const [t, events] of during.entries()) expect((await push(`f${t}`, events)).status).toBe(200);
      const direct = await outbox.cause("direct").send(roomId(ROOM_B), { body: "direct after", pad: PAD });
      await direct.delivered();
      const all = [...before, message("gated", ROOM_A), ...during.flat()];
      await until("every reply", () => replies().length === all.length * 2, 30_000);
      await outbox.onIdle();

      for (const room of [ROOM_A, ROOM_B]) {
        const expected = all
          .filter((e) => e.room_id === room)
          .flatMap((e) => [`re ${e.content.body} #0`, `re ${e.content.body} #1`]);
        const got = hs
          .roomEvents(room)
          .map((e) => String(e.content.body))
          .filter((b) => b.startsWith("re "));
        expect(got).toEqual(expected);
      }
      expect(await realJournal.totals()).toEqual({ pending: 0, done: all.length, dead: 0, rejected: 0 });
      expect(await realOutboxStore.totals()).toEqual({ pending: 0, sent: all.length * 2 + 1, dead: 0 });
      // Nothing was sent twice: no request needed the homeserver's dedupe.
      expect(hs.stats.deduped).toBe(0);
    } finally {
      fault.heal(db);
      await dispatcher.stop(2000);
      await host.stop();
      await outbox.stop(2000);
      await server.close(2000);
      await client.close();
      await hs.stop();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
