// The "burst under latency" scenario of the outbound reliability tests (outage, synapseRestart,
// crashOutbound): in each of `rooms` rooms a ghost of its own sends `perRoom` numbered messages,
// all caused by one `!burst` command (support/burstPlugin.ts), while each send is slowed down
// (a FaultProxy's latency, or the homeserver's own rate limit), so that whatever the test does
// next (kill the framework, stop or kill Synapse) falls mid-burst. Afterwards it reads back what
// arrived, and proves that nothing more is still coming before a test counts duplicates.
import type { ProxiedRequest } from "../../support/FaultProxy.ts";
import { eventually, SERVER_NAME, type E2eStack, type User } from "./E2eStack.ts";

/** The plugin entry of the courier config the scenario needs. */
export const BURST_PLUGIN = {
  name: "burst",
  module: new URL("./burstPlugin.ts", import.meta.url).pathname,
} as const;

export const isRoomSend = (r: ProxiedRequest): boolean =>
  r.method === "PUT" && r.path.includes("/send/m.room.message/");

export interface GhostBurstOptions {
  readonly rooms: number;
  readonly perRoom: number;
  /** Ghost r is `@courier_<ghostPrefix><r>`. */
  readonly ghostPrefix: string;
  /**
   * Each room send through `stack.toSynapse` waits this long first (a stack with `faultProxies`;
   * the test clears it with the proxy's other faults). Without it, the homeserver's rate limit
   * must do the slowing down. @default none
   */
  readonly latencyMs?: number;
}

interface GhostMessage {
  readonly n: unknown;
  readonly mark: unknown;
}

export class GhostBurst {
  readonly rooms: readonly string[];
  readonly options: GhostBurstOptions;
  readonly #stack: E2eStack;
  readonly #user: User;
  #confirmed = 0;

  private constructor(stack: E2eStack, user: User, rooms: string[], options: GhostBurstOptions) {
    this.#stack = stack;
    this.#user = user;
    this.rooms = rooms;
    this.options = options;
    // Synapse's 200s for room sends, as the proxy saw them: the burst's progress, without polling.
    stack.toSynapse?.on("upstream", ({ request, status }) => {
      if (isRoomSend(request) && status === 200) this.#confirmed++;
    });
  }

  /**
   * Creates the rooms (public, so the ghosts can join; the bot joins each), slows room sends down
   * when asked, and has `user` say `!burst <perRoom> <ghost>` in each room. The courier must be
   * running.
   */
  static async start(stack: E2eStack, user: User, options: GhostBurstOptions): Promise<GhostBurst> {
    if (options.latencyMs !== undefined && !stack.toSynapse)
      throw new Error("GhostBurst: latencyMs needs a stack started with faultProxies");
    const rooms: string[] = [];
    for (let r = 0; r < options.rooms; r++)
      rooms.push(await stack.roomWithBot(user, { preset: "public_chat" }));
    const burst = new GhostBurst(stack, user, rooms, options);
    if (options.latencyMs !== undefined)
      stack.toSynapse!.setFaults({ latencyRate: 1, latencyMs: options.latencyMs, match: isRoomSend });
    for (const [r, roomId] of rooms.entries())
      await stack.say(user, roomId, `!burst ${options.perRoom} ${burst.ghost(r)}`);
    return burst;
  }

  ghost(r: number): string {
    return `@courier_${this.options.ghostPrefix}${r}:${SERVER_NAME}`;
  }

  /** Sends made so far: Synapse's 200s through the proxy when there is one, else the ghosts' messages read back. */
  async progress(): Promise<number> {
    if (this.#stack.toSynapse) return this.#confirmed;
    return (await this.#read()).reduce((sum, messages) => sum + messages.length, 0);
  }

  /** Waits until `atLeast` sends were made (so what comes next falls mid-burst); resolves with the count. */
  underWay(atLeast: number, timeoutMs = 60_000): Promise<number> {
    return eventually("the burst to be under way", timeoutMs, async () => {
      const made = await this.progress();
      return made >= atLeast ? made : undefined;
    });
  }

  /** Each room's ghost messages read back in timeline order, as their numbers (markers left out). */
  async numbers(): Promise<unknown[][]> {
    return (await this.#read()).map((messages) =>
      messages.filter((m) => m.mark === undefined).map((m) => m.n),
    );
  }

  /** Waits until every room has each number of the burst at least once. */
  async allArrived(timeoutMs = 120_000): Promise<void> {
    await eventually("every message of the burst", timeoutMs, async () =>
      (await this.numbers()).every((ns) => new Set(ns).size === this.options.perRoom) ? true : undefined,
    );
  }

  /**
   * Has each ghost send a marker after everything it was asked for, waits until every marker has
   * arrived, and resolves with each room's numbers then. Whatever the outbox still had to send in
   * a room (a message sent again after a crash included) is ahead of the marker in that room's
   * lane, which has one request in flight and sends in order: it has arrived by now, and nothing
   * of the burst can follow. Throws when something of a ghost did follow its marker.
   */
  async settled(label = "end", timeoutMs = 120_000): Promise<unknown[][]> {
    for (const [r, roomId] of this.rooms.entries())
      await this.#stack.say(this.#user, roomId, `!mark ${this.ghost(r)} ${label}`);
    const seen = await eventually(`every ghost's marker "${label}"`, timeoutMs, async () => {
      const read = await this.#read();
      return read.every((messages) => messages.some((m) => m.mark === label)) ? read : undefined;
    });
    return seen.map((messages, r) => {
      const after = messages.slice(messages.findIndex((m) => m.mark === label) + 1);
      if (after.length > 0)
        throw new Error(`${this.ghost(r)} sent ${JSON.stringify(after)} after its marker "${label}"`);
      return messages.filter((m) => m.mark === undefined).map((m) => m.n);
    });
  }

  /** Asserts every room has 0..perRoom-1, each once, in order. */
  expectEachOnceInOrder(numbers: unknown[][]): void {
    const expected = Array.from({ length: this.options.perRoom }, (_, i) => i);
    expect(numbers).toHaveLength(this.rooms.length);
    for (const ns of numbers) expect(ns).toEqual(expected);
  }

  async #read(): Promise<GhostMessage[][]> {
    const out: GhostMessage[][] = [];
    for (const [r, roomId] of this.rooms.entries()) {
      const messages = await this.#stack.messages(this.#user.accessToken, roomId);
      out.push(
        messages
          .filter((m) => m.sender === this.ghost(r))
          .map((m) => ({ n: m.content.n, mark: m.content.mark })),
      );
    }
    return out;
  }
}
