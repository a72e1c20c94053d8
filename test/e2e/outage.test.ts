// Long outages against a real Synapse, each side in turn.
//
// 1. Synapse stops (cleanly) mid-burst and stays down for a while: the outbox backs off to its
//    cap (retry.capMs lowered to 2 s), keeps everything journaled, and catches up when Synapse
//    is back: every message once, in order.
// 2. The framework is down while a user keeps talking: Synapse stores what it could not push and,
//    once the framework is back (its start-up ping makes Synapse retry at once), pushes the
//    backlog. Every command is handled once, in order per room.
//
// "Once" is checked only after a marker sent last (by the ghost of each room, or echoed by the
// bot) has arrived in every room: a duplicate is sent before it, in the same room lane.
import { E2eStack, eventually, type CourierProcess, type User } from "./support/E2eStack.ts";
import { BURST_PLUGIN, GhostBurst } from "./support/ghostBurst.ts";
import { synapseAppservice, transactionId, untilSynapseCaughtUp } from "./support/transactionLog.ts";

const CAP_MS = 2_000;

/** The JSON log lines of a courier process with this `msg`. */
function logged(courier: CourierProcess, msg: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of courier.lines) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a JSON line
    }
  }
  return out;
}

describe("long outages against Synapse", () => {
  let stack: E2eStack;
  let courier: CourierProcess | undefined;
  let alice: User;

  beforeAll(async () => {
    stack = await E2eStack.start({
      faultProxies: { seed: 0x0a7 },
      config: {
        plugins: [BURST_PLUGIN, { name: "echo" }],
        logging: { level: "debug" },
        outbox: { retry: { baseMs: 100, capMs: CAP_MS }, rate: { perSecond: 1000, burst: 1000 } },
      },
    });
    alice = await stack.user("alice");
  }, 120_000);
  afterAll(async () => {
    await courier?.kill("SIGTERM");
    await stack?.stop();
  }, 60_000);

  test("Synapse down 20 s mid-burst: backoff to the cap, nothing lost, caught up once, in order", async () => {
    const ROOMS = 3;
    const PER_ROOM = 60;
    const DOWN_MS = 20_000;
    courier = await stack.startCourier();
    const burst = await GhostBurst.start(stack, alice, {
      rooms: ROOMS,
      perRoom: PER_ROOM,
      ghostPrefix: "out",
      latencyMs: 150,
    });
    const confirmedAtStop = await burst.underWay(30);

    await stack.synapse.stop();
    const retriesBefore = logged(courier, "request will be retried").length;
    // Paces the scenario, proves nothing: the outage lasts long enough to back off to the cap.
    await new Promise((r) => setTimeout(r, DOWN_MS));
    const duringOutage = logged(courier, "request will be retried").slice(retriesBefore);
    await stack.synapse.resume();
    stack.toSynapse!.clearFaults();

    await burst.allArrived();
    const numbers = await burst.settled();
    const delays = duringOutage.map((l) => Number(l.delay));
    process.stderr.write(
      `outage, Synapse down ${DOWN_MS} ms: ${confirmedAtStop} of ${ROOMS * PER_ROOM} sends confirmed before, ${delays.length} retries while down, ` +
        `longest delay ${Math.max(...delays)} ms (cap ${CAP_MS})\n`,
    );
    expect(confirmedAtStop).toBeLessThan(ROOMS * PER_ROOM);
    burst.expectEachOnceInOrder(numbers);
    // Backed off to the cap, never beyond it, and kept trying (no lane gave up).
    expect(delays.length).toBeGreaterThan(0);
    expect(Math.max(...delays)).toBeLessThanOrEqual(CAP_MS);
    expect(delays.filter((d) => d >= CAP_MS / 2).length).toBeGreaterThan(0);
    expect(logged(courier, "request dead-lettered")).toEqual([]);
  }, 300_000);

  /** Alice's commands in each room, in timeline order, and the bot's echoes of them. */
  const commandsAndEchoes = async (rooms: string[]) => {
    const out: Array<{ commands: string[]; echoes: string[] }> = [];
    for (const roomId of rooms) {
      const messages = await stack.messages(alice.accessToken, roomId);
      out.push({
        commands: messages
          .filter((m) => m.sender === alice.userId && String(m.content.body).startsWith("!echo "))
          .map((m) => String(m.content.body).slice("!echo ".length)),
        echoes: messages.filter((m) => m.sender === stack.botUserId).map((m) => String(m.content.body)),
      });
    }
    return out;
  };

  /** Alice says `!echo <room>-<k>` PER_ROOM times in each room, all at once (Synapse orders them). */
  const talk = (rooms: string[], perRoom: number, label: string) =>
    Promise.all(
      rooms.flatMap((roomId, r) =>
        Array.from({ length: perRoom }, (_, k) => stack.say(alice, roomId, `!echo ${label}${r}-${k}`)),
      ),
    );

  /**
   * Alice says `!echo <label>-marker<room>` in each room, last, and waits until Synapse has pushed
   * everything it had for us (every transaction acknowledged) and each marker is echoed. Synapse
   * pushes in order, a room's events run in order and the bot's sends to a room leave in order: a
   * command handled twice (a transaction resent, a journal replayed) is echoed before the marker.
   * Resolves with what the rooms show then, markers included (last).
   */
  const afterMarkers = async (rooms: string[], label: string) => {
    const marker = (r: number) => `${label}-marker${r}`;
    for (const [r, roomId] of rooms.entries()) await stack.say(alice, roomId, `!echo ${marker(r)}`);
    // A transaction Synapse stranded while it recovered (see untilSynapseCaughtUp) holds the bot's
    // own echoes here: every command's echo is in by now. A failed push makes Synapse send it.
    const unstrand = async () => {
      stack.toCourier!.failNext(1, "502", (request) => transactionId(request) !== undefined);
      await stack.say(alice, rooms[0]!, "a push for Synapse to fail");
    };
    await untilSynapseCaughtUp(stack, 120_000, { unstrand });
    return eventually("every marker's echo", 120_000, async () => {
      const now = await commandsAndEchoes(rooms);
      return now.every((room, r) => room.echoes.includes(marker(r))) ? now : undefined;
    });
  };

  const expectEachEchoedOnceInOrder = async (rooms: string[], perRoom: number) => {
    await eventually("every echo", 180_000, async () =>
      (await commandsAndEchoes(rooms)).every((r) => new Set(r.echoes).size === perRoom) ? true : undefined,
    );
    for (const { commands, echoes } of await afterMarkers(rooms, "down")) {
      expect(commands).toHaveLength(perRoom + 1);
      expect(echoes).toEqual(commands);
    }
  };

  test("framework down while a user talks: Synapse's backlog is handled once, in order", async () => {
    const ROOMS = 3;
    const PER_ROOM = 40;
    courier ??= await stack.startCourier();
    const rooms: string[] = [];
    for (let r = 0; r < ROOMS; r++) rooms.push(await stack.roomWithBot(alice));
    await courier.kill("SIGKILL");

    await talk(rooms, PER_ROOM, "down");
    // Synapse finds us down, stores the events in transactions and backs off (2 s, 4 s, 8 s …).
    await eventually("Synapse to mark the appservice down, with transactions kept", 60_000, async () => {
      const seen = synapseAppservice(stack);
      return seen.state === "down" && seen.pendingTxnIds.length > 0 ? true : undefined;
    });

    courier = await stack.startCourier();
    await expectEachEchoedOnceInOrder(rooms, PER_ROOM);
    const journaled = logged(courier, "transaction journaled");
    process.stderr.write(
      `outage, framework down: ${ROOMS * PER_ROOM} commands; after the restart ${journaled.length} transactions, ` +
        `largest ${Math.max(0, ...journaled.map((l) => Number(l.events)))} events\n`,
    );
  }, 300_000);

  test("framework unresponsive for 15 s (a push stalled): Synapse's queued events come in large transactions, handled once, in order", async () => {
    const ROOMS = 3;
    const PER_ROOM = 40;
    const proxy = stack.toCourier!;
    courier ??= await stack.startCourier();
    const rooms: string[] = [];
    for (let r = 0; r < ROOMS; r++) rooms.push(await stack.roomWithBot(alice));
    const journaledBefore = logged(courier, "transaction journaled").length;
    // The next push is held 15 s (under Synapse's 60 s timeout), then delivered; meanwhile
    // Synapse queues everything else for us.
    proxy.setFaults({ stallMs: 15_000, afterStall: "forward" });
    proxy.failNext(1, "stall", (r) => r.method === "PUT" && r.path.includes("/transactions/"));
    await stack.say(alice, rooms[0]!, "!echo first");
    await talk(rooms, PER_ROOM, "queued");

    await eventually("every echo", 180_000, async () =>
      (await commandsAndEchoes(rooms)).every(
        (r) => r.echoes.filter((e) => e.startsWith("queued")).length >= PER_ROOM,
      )
        ? true
        : undefined,
    );
    for (const { commands, echoes } of await afterMarkers(rooms, "stalled")) expect(echoes).toEqual(commands);
    const sizes = logged(courier, "transaction journaled")
      .slice(journaledBefore)
      .map((l) => Number(l.events));
    process.stderr.write(
      `outage, framework stalled: ${ROOMS * PER_ROOM + 1} commands in ${sizes.length} transactions, largest ${Math.max(...sizes)} events\n`,
    );
    // The catch-up really came in large transactions (Synapse batches up to 100 events).
    expect(Math.max(...sizes)).toBeGreaterThanOrEqual(20);
    proxy.clearFaults();
  }, 300_000);
});
