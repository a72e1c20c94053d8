// Synapse crashes mid-burst and loses its in-memory transaction cache. Just before the crash,
// every room send is processed by Synapse but its answer is lost (the proxy drops it), so each
// room's head message is "sent, unconfirmed" when Synapse dies. The outbox then resends those
// heads, byte for byte, to a Synapse that remembers nothing in memory.
//
// - outbox.ghostDevices on: each ghost sends as its device, Synapse finds the txnId in its
//   database (event_txn_id_device_id) and answers with the first event: nothing duplicated.
// - off (the control, proving the test can see the problem): the resent heads become new events;
//   every duplicate is the head repeated, nothing is missing or reordered.
//
// Duplicates are counted once a marker each ghost sends last has arrived: a resent head leaves
// before it, in the same room lane.
import type { ProxiedRequest } from "../support/FaultProxy.ts";
import { E2eStack, eventually, type CourierProcess, type User } from "./support/E2eStack.ts";
import { BURST_PLUGIN, GhostBurst, isRoomSend } from "./support/ghostBurst.ts";

const ROOMS = 4;
const PER_ROOM = 60;
const roomOf = (r: ProxiedRequest) => decodeURIComponent(r.path.split("/")[5] ?? "");

describe.each([
  { ghostDevices: true, outcome: "nothing is duplicated" },
  { ghostDevices: false, outcome: "the unconfirmed heads are duplicated (control)" },
])("Synapse killed mid-burst, outbox.ghostDevices $ghostDevices", ({ ghostDevices, outcome }) => {
  let stack: E2eStack;
  let courier: CourierProcess | undefined;
  let alice: User;

  beforeAll(async () => {
    stack = await E2eStack.start({
      faultProxies: { seed: 0x5e5 },
      config: {
        plugins: [BURST_PLUGIN],
        outbox: {
          ghostDevices,
          rate: { perSecond: 1000, burst: 1000 },
          retry: { baseMs: 100, capMs: 1000 },
          requestTimeoutMs: 10_000,
        },
      },
    });
    alice = await stack.user("alice");
  }, 120_000);
  afterAll(async () => {
    await courier?.kill("SIGTERM");
    await stack?.stop();
  }, 60_000);

  test(`${ROOMS} rooms x ${PER_ROOM} ghost messages: ${outcome}; nothing missing, order kept`, async () => {
    const proxy = stack.toSynapse!;
    courier = await stack.startCourier();
    // Slow enough that the crash falls mid-burst.
    const burst = await GhostBurst.start(stack, alice, {
      rooms: ROOMS,
      perRoom: PER_ROOM,
      ghostPrefix: "r",
      latencyMs: 150,
    });
    const { rooms } = burst;
    await burst.underWay(40);

    // From now on Synapse processes each send but its answer never arrives.
    const unconfirmedRooms = new Set<string>();
    proxy.on("fault", ({ kind, request }) => {
      if (kind === "dropResponse") unconfirmedRooms.add(roomOf(request));
    });
    proxy.setFaults({ rateDropResponse: 1, match: isRoomSend });
    await eventually("a processed, unconfirmed head in every room", 60_000, async () =>
      rooms.every((room) => unconfirmedRooms.has(room)) ? true : undefined,
    );
    await stack.synapse.restart({ signal: "SIGKILL" });
    proxy.clearFaults();

    await burst.allArrived(180_000);
    const seen = await burst.settled();
    const expected = Array.from({ length: PER_ROOM }, (_, i) => i);
    const duplicates = seen.reduce((sum, ns) => sum + ns.length - PER_ROOM, 0);
    process.stderr.write(
      `synapse restart, ghostDevices ${ghostDevices}: ${ROOMS * PER_ROOM} messages, ${duplicates} duplicated, ` +
        `${unconfirmedRooms.size} rooms with an unconfirmed head at the crash, proxy ${JSON.stringify(proxy.stats)}\n`,
    );
    for (const ns of seen) {
      // Order kept and nothing missing: the first occurrences are 0..PER_ROOM-1 in order.
      expect(ns.filter((n, i) => ns.indexOf(n) === i)).toEqual(expected);
      if (ghostDevices) expect(ns).toEqual(expected);
      // Any duplicate is the message just before it, repeated (a resent head), never an older one.
      ns.forEach((n, i) => {
        if (ns.indexOf(n) !== i) expect(ns[i - 1]).toBe(n);
      });
    }
    if (!ghostDevices) expect(duplicates).toBeGreaterThan(0);
  }, 420_000);
});
