// Soak: mixed room and to-device traffic between the framework and a real Synapse through a
// fault-injecting proxy in each direction. Outbound (the outbox's sends): latency, connections
// reset or cut mid-request, answers lost after Synapse processed the send, 502s, 429 storms,
// stalls longer than the client's timeout. Inbound (Synapse's pushes of the commands and of
// everything sent back): latency, resets, lost answers, 502s. Bounded: fixed message counts, a
// fault budget per proxy, deadlines. Seeded: COURIER_SOAK_SEED reproduces a run's fault draws.
//
// Every room message must arrive exactly once and in order per room (read back with /messages);
// every to-device message must arrive (at least once: counted distinct, duplicates reported).
import type { ProxiedRequest } from "../support/FaultProxy.ts";
import { E2eStack, eventually, SERVER_NAME, type CourierProcess, type User } from "./support/E2eStack.ts";
import { TO_DEVICE_EVERY } from "./support/soakPlugin.ts";

const SEED = Number(process.env.COURIER_SOAK_SEED ?? 20261124);
const ROOMS = 4;
const ROUNDS = 3;
const PER_ROUND = 50;
const SOAK_PLUGIN = new URL("./support/soakPlugin.ts", import.meta.url).pathname;
const REQUEST_TIMEOUT_MS = 4_000;

const isOutboxSend = (r: ProxiedRequest) =>
  r.method === "PUT" && (r.path.includes("/send/") || r.path.includes("/sendToDevice/"));
const isTransaction = (r: ProxiedRequest) => r.method === "PUT" && r.path.includes("/transactions/");

interface SyncBody {
  next_batch: string;
  to_device?: {
    events: Array<{
      type: string;
      sender: string;
      content: { tag?: string; n?: number; "org.matrix.msgid"?: string };
    }>;
  };
}

describe("soak through fault-injecting proxies", () => {
  let stack: E2eStack;
  let courier: CourierProcess | undefined;
  let alice: User;

  beforeAll(async () => {
    stack = await E2eStack.start({
      faultProxies: { seed: SEED },
      config: {
        plugins: [{ name: "soak", module: SOAK_PLUGIN }],
        outbox: {
          requestTimeoutMs: REQUEST_TIMEOUT_MS,
          retry: { baseMs: 100, capMs: 2_000 },
          rate: { perSecond: 200, burst: 200 },
        },
      },
    });
    alice = await stack.user("alice");
  }, 120_000);
  afterAll(async () => {
    await courier?.kill("SIGTERM");
    await stack?.stop();
  }, 60_000);

  test(`${ROOMS * ROUNDS * PER_ROUND} room messages exactly once in order, to-device at least once`, async () => {
    const toSynapse = stack.toSynapse!;
    const toCourier = stack.toCourier!;
    courier = await stack.startCourier();
    const rooms: string[] = [];
    for (let r = 0; r < ROOMS; r++) rooms.push(await stack.roomWithBot(alice, { preset: "public_chat" }));
    const ghost = (r: number) => `@courier_soak${r}:${SERVER_NAME}`;
    const tag = (r: number, round: number) => `r${r}-${round}`;
    let since = (await stack.call<SyncBody>(alice.accessToken, "GET", "/_matrix/client/v3/sync?timeout=0"))
      .next_batch;

    toSynapse.setFaults({
      match: isOutboxSend,
      latencyRate: 0.3,
      latencyMs: 200,
      rateReset: 0.03,
      rateCutRequest: 0.02,
      rateDropResponse: 0.04,
      rateCutResponse: 0.03,
      rate502: 0.03,
      rate429: 0.01,
      stormLength: 8,
      retryAfterMs: 300,
      rateStall: 0.01,
      stallMs: REQUEST_TIMEOUT_MS + 2_000,
      afterStall: "forward",
      maxStalled: 2,
      maxFaults: 400,
    });
    // Each failed push sends Synapse into its recovery backoff (2 s first): a small budget.
    toCourier.setFaults({
      match: isTransaction,
      latencyRate: 0.3,
      latencyMs: 100,
      rateReset: 0.04,
      rateDropResponse: 0.05,
      rateCutResponse: 0.03,
      rate502: 0.04,
      maxFaults: 15,
    });

    const started = Date.now();
    for (let round = 0; round < ROUNDS; round++) {
      for (const [r, roomId] of rooms.entries()) {
        await stack.say(
          alice,
          roomId,
          `!soak ${PER_ROUND} ${ghost(r)} ${alice.userId} ${alice.deviceId} ${tag(r, round)}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 2_000)); // rounds overlap the faults
    }

    const sequences = async () => {
      const out: string[][] = [];
      for (const roomId of rooms) {
        const messages = await stack.messages(alice.accessToken, roomId);
        out.push(
          messages.filter((m) => typeof m.content.tag === "string").map((m) => String(m.content.body)),
        );
      }
      return out;
    };
    await eventually("every room message", 240_000, async () =>
      (await sequences()).every((s) => new Set(s).size === ROUNDS * PER_ROUND) ? true : undefined,
    );
    const roomsDoneMs = Date.now() - started;
    toSynapse.clearFaults();
    toCourier.clearFaults();

    // To-device: read alice's device inbox until every (tag, n) is there.
    const expectedToDevice = new Set<string>();
    for (let r = 0; r < ROOMS; r++)
      for (let round = 0; round < ROUNDS; round++)
        for (let n = 0; n < PER_ROUND; n += TO_DEVICE_EVERY) expectedToDevice.add(`${tag(r, round)}/${n}`);
    const received: string[] = [];
    /** (tag, n) by the message id the outbox stamped: how a recipient would dedupe. */
    const byMessageId = new Map<string, Set<string>>();
    await eventually("every to-device message", 120_000, async () => {
      const sync = await stack.call<SyncBody>(
        alice.accessToken,
        "GET",
        `/_matrix/client/v3/sync?timeout=1000&since=${encodeURIComponent(since)}`,
      );
      since = sync.next_batch;
      for (const e of sync.to_device?.events ?? []) {
        if (e.type !== "org.example.soak") continue;
        const key = `${e.content.tag}/${e.content.n}`;
        received.push(key);
        const id = String(e.content["org.matrix.msgid"]);
        byMessageId.set(id, (byMessageId.get(id) ?? new Set()).add(key));
      }
      return [...expectedToDevice].every((k) => received.includes(k)) ? true : undefined;
    });

    await new Promise((resolve) => setTimeout(resolve, 3_000)); // a late duplicate would show up now
    const seen = await sequences();
    const report = {
      seed: SEED,
      roomMessages: ROOMS * ROUNDS * PER_ROUND,
      roomMessagesSeen: seen.reduce((n, s) => n + s.length, 0),
      toDeviceExpected: expectedToDevice.size,
      toDeviceReceived: received.length,
      toDeviceDuplicates: received.length - new Set(received).size,
      roomsDoneMs,
      totalMs: Date.now() - started,
      outbound: toSynapse.stats,
      inbound: toCourier.stats,
    };
    process.stderr.write(`soak: ${JSON.stringify(report)}\n`);

    for (const [r, sequence] of seen.entries()) {
      const expected = Array.from({ length: ROUNDS }, (_, round) =>
        Array.from({ length: PER_ROUND }, (_, n) => `${tag(r, round)} ${n}`),
      ).flat();
      expect(sequence).toEqual(expected);
    }
    expect(new Set(received)).toEqual(expectedToDevice);
    // Each message has its own id, and a duplicate would carry the same one: recipients can dedupe.
    expect(byMessageId.size).toBe(expectedToDevice.size);
    expect([...byMessageId.values()].every((keys) => keys.size === 1)).toBe(true);
    // The faults really happened, in both directions.
    expect(toSynapse.injected).toBeGreaterThan(20);
    expect(toCourier.injected).toBeGreaterThan(0);
  }, 420_000);
});
