// "Handled once", counted (issue #14): against a real Synapse, every handler run of the test
// plugin (support/countPlugin.ts) is appended to a file that survives restarts, and each room
// event must have exactly one run in it, whatever Synapse resends:
//
// 1. the framework's 200 is lost (a proxy swallows it and resets Synapse's connection): Synapse
//    resends the same txnId, rebuilt (fresh `unsigned.age`);
// 2. the framework is killed after journaling, before answering, and restarted;
// 3. Synapse reuses txnIds for new events (its counter starts again): they are handled.
//
// Every wait is a condition with a deadline; "no second run" is checked only once the resend is
// proven to have landed (the proxy saw Synapse get a 200 for the same txnId) and a later message
// of the same room, dispatched after anything the resend could have added (one lane per room,
// in order), has run.
import { randomBytes } from "node:crypto";
import path from "node:path";
import type { ProxiedRequest } from "../support/FaultProxy.ts";
import { E2eStack, eventually, type CourierProcess, type User } from "./support/E2eStack.ts";
import { COUNT_TO_DEVICE_TYPE, readRuns } from "./support/countPlugin.ts";
import {
  TransactionLog,
  carriedBy,
  synapseAppservice,
  transactionId,
  type Attempt,
  type Carried,
} from "./support/transactionLog.ts";

const COUNT_PLUGIN = new URL("./support/countPlugin.ts", import.meta.url).pathname;
/** How long the proxy holds the transaction in flight while the test queues more behind it. */
const HOLD_MS = 4_000;

describe("inbound items handled exactly once against Synapse, counted by handler runs", () => {
  let stack: E2eStack;
  let alice: User;
  let courier: CourierProcess | undefined;
  let log: TransactionLog;
  let runsFile: string;
  let roomId: string;

  beforeAll(async () => {
    stack = await E2eStack.start({
      faultProxies: { seed: 0x14 },
      config: { plugins: [{ name: "count", module: COUNT_PLUGIN }] },
    });
    runsFile = path.join(stack.dir, "handler-runs.jsonl");
    log = new TransactionLog(stack.toCourier!);
    alice = await stack.user("alice");
  }, 120_000);
  afterAll(async () => {
    await courier?.kill("SIGTERM");
    await stack?.stop();
  }, 60_000);

  const startCourier = async (env: Record<string, string> = {}) =>
    (courier = await stack.startCourier({ COURIER_COUNT_FILE: runsFile, ...env }));

  /** Sends a message as alice; resolves with its event id. */
  const say = async (body: string): Promise<string> => {
    const txn = `x${randomBytes(8).toString("hex")}`;
    const sent = await stack.call<{ event_id: string }>(
      alice.accessToken,
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`,
      { msgtype: "m.text", body },
    );
    return sent.event_id;
  };

  const runs = () => readRuns(runsFile);
  const messageRuns = (eventId: string) =>
    runs().filter((r) => r.handler === "m.room.message" && r.eventId === eventId).length;
  const toDeviceRuns = (nonce: string) =>
    runs().filter((r) => r.handler === "toDevice" && r.nonce === nonce).length;
  const typingRuns = (userId: string) =>
    runs().filter((r) => r.handler === "m.typing" && r.roomId === roomId && r.userIds.includes(userId))
      .length;
  const receiptRuns = (receipt: string) =>
    runs().filter((r) => r.handler === "m.receipt" && r.roomId === roomId && r.receipts.includes(receipt))
      .length;

  /**
   * Synapse got a 200 for everything it created and counts the appservice as up (no state yet
   * counts as up too: `_is_service_up` in synapse/appservice/scheduler.py).
   */
  const synapseCaughtUp = () => {
    const seen = synapseAppservice(stack);
    return seen.state !== "down" && seen.pendingTxnIds.length === 0;
  };

  /** `eventually`, with what the proxy and the handlers saw when it times out. */
  const waitFor = async (what: string, timeoutMs: number, check: () => boolean) => {
    try {
      await eventually(what, timeoutMs, async () => (check() ? true : undefined));
    } catch (error) {
      throw new Error(
        `${(error as Error).message}\n--- handler runs ---\n${runs()
          .map((r) => JSON.stringify(r))
          .join("\n")}\n--- transactions through the proxy ---\n${log.describe()}`,
      );
    }
  };

  /**
   * A message sent now, once it has run: any run an earlier push added to this room's lane has
   * happened before it (the dispatcher runs a room's items in journal order).
   */
  const markerRan = async (name: string) => {
    const marker = await say(`marker ${name}`);
    await waitFor(`the marker "${name}" to run`, 30_000, () => messageRuns(marker) >= 1);
    return marker;
  };

  test("the framework's 200 is lost and Synapse resends the transaction: each handler ran once", async () => {
    const started = Date.now();
    await startCourier();
    roomId = await stack.roomWithBot(alice);
    // To-device messages reach the bot through its device, which the framework creates at start-up.
    await eventually("the bot's device", 30_000, async () => {
      const { devices } = await stack.call<{ devices: unknown[] }>(
        stack.asToken,
        "GET",
        `/_matrix/client/v3/devices?user_id=${encodeURIComponent(stack.botUserId)}`,
      );
      return devices.length > 0 ? true : undefined;
    });
    await waitFor("Synapse to have pushed everything so far", 30_000, synapseCaughtUp);

    const proxy = stack.toCourier!;
    const blocker = "t1 blocker";
    const bodies = Array.from({ length: 5 }, (_, i) => `t1 message ${i}`);
    const nonce = `t1-${randomBytes(8).toString("hex")}`;
    const typing = `m.typing ${roomId} ${alice.userId}`;
    let receipt = ""; // `m.receipt <room> <event id> m.read <alice>`, once the blocker has an id
    const ours = (c: Carried) =>
      c.bodies.some((b) => bodies.includes(b)) ||
      c.toDeviceNonces.includes(nonce) ||
      c.ephemeral.includes(typing) ||
      (receipt !== "" && c.ephemeral.includes(receipt));

    // The first attempt of each transaction carrying one of our items: the framework journals and
    // answers it, the proxy resets Synapse's connection instead of passing the 200 on. Synapse
    // fails fast, marks the appservice down, and its recoverer resends the same txnId 2 s later.
    const dropped = new Set<string>();
    proxy.setFaults({
      rateDropResponse: 1,
      stallMs: HOLD_MS,
      afterStall: "forward",
      match: (request: ProxiedRequest) => {
        const txnId = transactionId(request);
        if (txnId === undefined || dropped.has(txnId) || !ours(carriedBy(request.body))) return false;
        dropped.add(txnId);
        return true;
      },
    });
    // Synapse sends one transaction at a time and batches what queued meanwhile: holding the
    // blocker's puts everything below into the next transaction, while Synapse counts the
    // appservice as up (what it creates while the appservice is down carries no to-device or
    // ephemeral part at all, `send` in synapse/appservice/scheduler.py).
    proxy.failNext(1, "stall", (request) => carriedBy(request.body).bodies.includes(blocker));
    const blockerId = await say(blocker);
    await waitFor("the blocker's transaction to be held", 20_000, () =>
      log.attempts.some((a) => a.carried.bodies.includes(blocker) && a.fault === "stall"),
    );
    const queueing = Date.now();
    const eventIds: string[] = [];
    for (const body of bodies) eventIds.push(await say(body));
    await stack.call(
      alice.accessToken,
      "PUT",
      `/_matrix/client/v3/sendToDevice/${COUNT_TO_DEVICE_TYPE}/${nonce}`,
      { messages: { [stack.botUserId]: { "*": { nonce } } } },
    );
    await stack.call(
      alice.accessToken,
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/typing/${encodeURIComponent(alice.userId)}`,
      { typing: true, timeout: 120_000 },
    );
    receipt = `m.receipt ${roomId} ${blockerId} m.read ${alice.userId}`;
    await stack.call(
      alice.accessToken,
      "POST",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/receipt/m.read/${encodeURIComponent(blockerId)}`,
      {},
    );
    const queuedMs = Date.now() - queueing;

    const receiptRun = `${blockerId} m.read ${alice.userId}`;
    const firstDrop = (txnId: string) => log.of(txnId).find((a) => a.fault === "dropResponse");
    await waitFor(
      "every item to run, every dropped transaction to be resent and acknowledged, Synapse caught up",
      60_000,
      () =>
        eventIds.every((id) => messageRuns(id) >= 1) &&
        toDeviceRuns(nonce) >= 1 &&
        typingRuns(alice.userId) >= 1 &&
        receiptRuns(receiptRun) >= 1 &&
        dropped.size > 0 &&
        [...dropped].every((txnId) => {
          const drop = firstDrop(txnId);
          return drop !== undefined && log.resentAndAcked(txnId, drop) !== undefined;
        }) &&
        synapseCaughtUp(),
    );
    proxy.clearFaults();

    // What was delivered twice: every item reached the framework in an attempt whose 200 Synapse
    // never saw; each room event came again in the resend of its txnId.
    const drops = [...dropped].map((txnId) => firstDrop(txnId)!);
    const resends = [...dropped].flatMap((txnId) =>
      log.of(txnId).filter((a) => a.seq > firstDrop(txnId)!.seq),
    );
    const inDrop = (where: (c: Carried) => boolean) => drops.some((a: Attempt) => where(a.carried));
    for (const id of eventIds) {
      expect(inDrop((c) => c.eventIds.includes(id))).toBe(true);
      expect(resends.some((a) => a.answered === 200 && a.carried.eventIds.includes(id))).toBe(true);
    }
    expect(inDrop((c) => c.toDeviceNonces.includes(nonce))).toBe(true);
    expect(inDrop((c) => c.ephemeral.includes(typing))).toBe(true);
    expect(inDrop((c) => c.ephemeral.includes(receipt))).toBe(true);
    // Synapse resends room events only: `get_oldest_unsent_txn` (synapse/storage/databases/main/
    // appservice.py) rebuilds a retried transaction from the stored event ids, with empty
    // ephemeral and to-device parts ("not yet populated for catch-up transactions"). So the
    // to-device and ephemeral handlers cannot see their item twice from Synapse, and one run each
    // is what must be counted; the room lanes are where a retry could add runs.
    for (const resend of resends) {
      expect(resend.carried.toDeviceNonces).toEqual([]);
      expect(resend.carried.ephemeral).toEqual([]);
    }

    await markerRan("t1");
    const counts = {
      messages: eventIds.map(messageRuns),
      blocker: messageRuns(blockerId),
      toDevice: toDeviceRuns(nonce),
      typing: typingRuns(alice.userId),
      receipt: receiptRuns(receiptRun),
    };
    process.stderr.write(
      `inboundExactlyOnce t1: runs ${JSON.stringify(counts)}; dropped txns ${[...dropped].join(",")}, ` +
        `${resends.length} resend(s), queued in ${queuedMs} ms, ${Date.now() - started} ms\n`,
    );
    expect(counts).toEqual({ messages: [1, 1, 1, 1, 1], blocker: 1, toDevice: 1, typing: 1, receipt: 1 });

    // Alice stops typing now, so no typing change reaches the next test's framework later.
    await stack.call(
      alice.accessToken,
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/typing/${encodeURIComponent(alice.userId)}`,
      { typing: false },
    );
    await waitFor("the end of typing to run", 30_000, () =>
      runs().some((r) => r.handler === "m.typing" && r.roomId === roomId && r.userIds.length === 0),
    );
    await waitFor("Synapse to have pushed everything so far", 30_000, synapseCaughtUp);
  }, 180_000);

  test("killed after journaling, before answering, then restarted: the handler ran once in total", async () => {
    const started = Date.now();
    await courier!.kill("SIGTERM");
    await startCourier({ COURIER_FAULT: "kill-after-journal" });
    const from = log.attempts.length;
    const eventId = await say("t2 killed before the answer");
    expect(await courier!.exited).toBe(null); // SIGKILL, right after the commit
    const first = log.attempts.slice(from).find((a) => a.carried.eventIds.includes(eventId));
    expect(first).toBeDefined();
    expect(first!.answered).toBeUndefined(); // Synapse never got an answer for it
    expect(messageRuns(eventId)).toBe(0); // journaled, not dispatched

    await startCourier();
    await waitFor("the event to run and its transaction to be resent and acknowledged", 60_000, () => {
      return (
        messageRuns(eventId) >= 1 &&
        log.resentAndAcked(first!.txnId, first!) !== undefined &&
        synapseCaughtUp()
      );
    });
    const resent = log.resentAndAcked(first!.txnId, first!)!;
    expect(resent.carried.eventIds).toContain(eventId); // the same event came again
    await markerRan("t2");
    const count = messageRuns(eventId);
    process.stderr.write(
      `inboundExactlyOnce t2: runs ${count} (txn ${first!.txnId}: ${log.of(first!.txnId).length} attempts, ` +
        `acknowledged at attempt #${resent.seq}), ${Date.now() - started} ms\n`,
    );
    expect(count).toBe(1);
  }, 120_000);

  test("Synapse's txn counter starts again: new events under used txnIds are each handled once", async () => {
    const started = Date.now();
    await waitFor("Synapse to have pushed everything so far", 30_000, synapseCaughtUp);
    const used = log.acked();
    // Synapse on SQLite keeps no counter: the next txnId is max(application_services_txns.txn_id)
    // + 1, read once at start-up (`get_max_as_txn_id` in synapse/storage/databases/main/
    // appservice.py), and acknowledged transactions are deleted. With nothing pending, a restart
    // starts again at 1 (`application_services_state.last_txn`, its old counter, was dropped in
    // schema 72): the same situation as a database restored from a backup.
    await stack.synapse.stop();
    expect(synapseAppservice(stack).pendingTxnIds).toEqual([]);
    const from = log.attempts.length;
    await stack.synapse.resume();

    const eventIds: string[] = [];
    for (let i = 0; i < 3; i++) eventIds.push(await say(`t3 message ${i}`));
    await waitFor("the new messages to run", 60_000, () => eventIds.every((id) => messageRuns(id) >= 1));
    const carriers = eventIds.map((id) =>
      log.attempts.slice(from).find((a) => a.answered === 200 && a.carried.eventIds.includes(id))!,
    );
    // Every new event came under a txnId the framework had already answered before the restart.
    expect(log.attempts[from]!.txnId).toBe("1");
    for (const carrier of carriers) expect(used.has(carrier.txnId)).toBe(true);
    await markerRan("t3");
    const counts = eventIds.map(messageRuns);
    process.stderr.write(
      `inboundExactlyOnce t3: runs ${JSON.stringify(counts)} under reused txnIds ` +
        `${[...new Set(carriers.map((c) => c.txnId))].join(",")} (${used.size} acknowledged before), ` +
        `${Date.now() - started} ms\n`,
    );
    expect(counts).toEqual([1, 1, 1]);
  }, 120_000);
});
