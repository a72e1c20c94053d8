// Three courier processes on one PostgreSQL database, behind a load balancer that the real
// Synapse pushes its transactions to. A user's commands in 10 rooms are each answered once, in
// order, while one instance is killed with SIGKILL and later restarted, and another is stopped.
import { findFreePort } from "../../scripts/synapse/LocalSynapse.ts";
import { RoundRobinBalancer } from "../support/RoundRobinBalancer.ts";
import { startPostgresCluster, type PostgresCluster } from "../support/postgresCluster.ts";
import { E2eStack, eventually, type CourierProcess } from "./support/E2eStack.ts";
import { untilSynapseCaughtUp } from "./support/transactionLog.ts";

const ROOMS = 10;
const ROUNDS = 6;

describe("several instances behind a load balancer, on the real Synapse", () => {
  let cluster: PostgresCluster;
  let balancer: RoundRobinBalancer;
  let stack: E2eStack;
  beforeAll(async () => {
    cluster = await startPostgresCluster();
    balancer = await RoundRobinBalancer.start();
    const url = await cluster.createDatabase();
    stack = await E2eStack.start({
      appserviceUrl: balancer.url,
      config: { store: { url, leaseSeconds: 2 } },
    });
  }, 180_000);
  afterAll(async () => {
    await stack?.stop();
    await balancer?.close();
    await cluster?.stop();
  }, 60_000);

  test("each command answered once, in order per room, through a SIGKILL and a restart", async () => {
    const ports = [await findFreePort(), await findFreePort(), await findFreePort()];
    const start = (i: number) => stack.startCourier({ COURIER_APPSERVICE_BIND_PORT: String(ports[i]) });
    const instances: CourierProcess[] = [];
    for (let i = 0; i < 3; i++) instances.push(await start(i));
    balancer.backends = ports.map((port) => `http://127.0.0.1:${port}`);

    const alice = await stack.user("alice");
    const rooms: string[] = [];
    for (let r = 0; r < ROOMS; r++) rooms.push(await stack.roomWithBot(alice));

    // Synapse can strand a transaction when events come while it recovers (see
    // untilSynapseCaughtUp) and send it after later ones: each round waits until Synapse has
    // every transaction acknowledged, so that a round's commands reach a room before the next's.
    const unstrand = async () => {
      balancer.failNextTransactions(1);
      await stack.say(alice, rooms[0]!, "a push for Synapse to fail");
    };
    for (let round = 0; round < ROUNDS; round++) {
      for (let r = 0; r < ROOMS; r++) await stack.say(alice, rooms[r]!, `!echo r${round} room${r}`);
      if (round === 1) await instances[0]!.kill("SIGKILL");
      if (round === 2) await instances[1]!.kill("SIGTERM");
      if (round === 3) instances[0] = await start(0);
      await untilSynapseCaughtUp(stack, 120_000, { unstrand });
    }

    const expected = (r: number) => Array.from({ length: ROUNDS }, (_, round) => `r${round} room${r}`);
    for (let r = 0; r < ROOMS; r++) {
      const replies = await eventually(`the replies in room ${r}`, 60_000, async () => {
        const bodies = (await stack.messages(alice.accessToken, rooms[r]!))
          .filter((e) => e.sender === stack.botUserId)
          .map((e) => String(e.content.body))
          .filter((body) => /^r\d+ room\d+$/.test(body));
        return bodies.length >= ROUNDS ? bodies : undefined;
      });
      expect(replies).toEqual(expected(r));
    }
    // The work was spread: every instance took transactions.
    expect([...balancer.forwarded.values()].filter((n) => n > 0).length).toBe(3);
  }, 300_000);
});
