// The IRC bridge against real servers: ngircd (test/support/Ngircd.ts) and Synapse (E2eStack).
// The bridge reaches ngircd through a gate (a TCP pass-through the test can hold shut), so a test
// decides who is back in a channel first after an IRC server restart.
import { createServer, connect, type Server } from "node:net";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { findFreePort } from "../../../scripts/synapse/LocalSynapse.ts";
import { Ngircd } from "../../support/Ngircd.ts";
import { IrcTestClient } from "../../support/IrcTestClient.ts";
import { E2eStack, eventually, type CourierProcess, type User } from "./E2eStack.ts";

export const CHANNEL = "#test";

/** A TCP pass-through to `target`; while shut, new connections are closed at once. */
export class Gate {
  readonly port: number;
  readonly #server: Server;
  open = true;

  private constructor(port: number, server: Server) {
    this.port = port;
    this.#server = server;
  }

  static async start(target: () => number): Promise<Gate> {
    const port = await findFreePort();
    const gate: { value?: Gate } = {};
    const server = createServer((inbound) => {
      if (!gate.value?.open) return void inbound.destroy();
      const outbound = connect(target(), "127.0.0.1");
      for (const s of [inbound, outbound]) s.on("error", () => {});
      inbound.pipe(outbound);
      outbound.pipe(inbound);
      inbound.on("close", () => outbound.destroy());
      outbound.on("close", () => inbound.destroy());
    });
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
    gate.value = new Gate(port, server);
    return gate.value;
  }

  async close(): Promise<void> {
    await new Promise((r) => this.#server.close(r));
  }
}

export interface IrcStackOptions {
  /** The bridge's pace on IRC. */
  readonly remoteRate: { perSecond: number; burst: number };
  /** One IRC connection per Matrix user instead of the relay bot. @default false */
  readonly puppets?: boolean;
}

export class IrcStack {
  readonly stack: E2eStack;
  readonly irc: Ngircd;
  readonly gate: Gate;
  readonly alice: User;
  roomId = "";

  private constructor(stack: E2eStack, irc: Ngircd, gate: Gate, alice: User) {
    this.stack = stack;
    this.irc = irc;
    this.gate = gate;
    this.alice = alice;
  }

  static async start(options: IrcStackOptions): Promise<IrcStack> {
    const irc = await Ngircd.start();
    const gate = await Gate.start(() => irc.port);
    const stack = await E2eStack.start({
      config: {
        logging: { level: "info" },
        plugins: [
          {
            name: "irc",
            config: {
              server: { host: "127.0.0.1", port: gate.port },
              nick: "courier",
              remoteRate: options.remoteRate,
              reconnect: { baseMs: 100, capMs: 1000 },
              ...(options.puppets ? { puppets: { enabled: true } } : {}),
            },
          },
        ],
      },
    });
    const alice = await stack.user("alice");
    return new IrcStack(stack, irc, gate, alice);
  }

  /**
   * Starts the framework; on the first start links a new room of alice's to the channel with
   * `!irc link`, and resolves once the relay bot is in the channel (seen by `observer`).
   */
  async startCourier(observer: IrcTestClient): Promise<CourierProcess> {
    const before = observer.lines.length;
    const courier = await this.stack.startCourier();
    if (!this.roomId) {
      // The bot may change power levels there (IRC operators become moderators).
      this.roomId = await this.stack.roomWithBot(this.alice, {
        power_level_content_override: { users: { [this.stack.botUserId]: 100 } },
      });
      await this.stack.say(this.alice, this.roomId, `!irc link ${CHANNEL}`);
      await eventually("the link to be confirmed", 20_000, async () => {
        const messages = await this.stack.messages(this.alice.accessToken, this.roomId);
        return messages.some((m) => String(m.content.body).startsWith(`Bridged ${CHANNEL}`))
          ? true
          : undefined;
      });
    }
    await observer.waitFor(
      "the relay bot to join",
      (l) => observer.lines.indexOf(l) >= before && l.command === "JOIN" && l.prefix.startsWith("courier!"),
    );
    return courier;
  }

  /** An IRC user in the channel. */
  async ircUser(nick: string): Promise<IrcTestClient> {
    const client = await IrcTestClient.connect(this.irc.port, nick);
    await client.join(CHANNEL);
    return client;
  }

  /** The room's messages from `sender` (a ghost id or alice), oldest first. */
  async messagesFrom(sender: string): Promise<Array<{ event_id: string; content: Record<string, unknown> }>> {
    const all = await this.stack.messages(this.alice.accessToken, this.roomId);
    return all.filter((m) => m.sender === sender);
  }

  /**
   * What waits in the framework's store (read-only, beside the running or killed process): remote
   * events journaled and not yet acted on, remote sends not yet marked sent, outbox rows not yet
   * sent to Synapse, inbound items not yet handled.
   */
  storeCounts(): { journaled: number; toIrc: number; outboxPending: number; inboundPending: number } {
    const db = new DatabaseSync(path.join(this.stack.dir, "courier.sqlite"), { readOnly: true });
    try {
      const count = (sql: string) => Number((db.prepare(sql).get() as { n: number }).n);
      return {
        journaled: count("SELECT count(*) AS n FROM plugin_kv WHERE plugin = 'irc' AND key LIKE 'rin:%'"),
        toIrc: count("SELECT count(*) AS n FROM plugin_kv WHERE plugin = 'irc' AND key LIKE 'rout:%'"),
        outboxPending: count("SELECT count(*) AS n FROM outbox WHERE state = 'pending'"),
        inboundPending: count("SELECT count(*) AS n FROM inbound_items WHERE state = 'pending'"),
      };
    } finally {
      db.close();
    }
  }

  async stop(): Promise<void> {
    await this.stack?.stop();
    await this.gate?.close();
    await this.irc?.close();
  }
}

export const ghost = (nick: string): string => `@courier_irc_${nick}:localhost`;
