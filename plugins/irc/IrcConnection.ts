import type { Logger } from "pino";
import { Client } from "matrix-org-irc";

export interface IrcConnectionOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  readonly nick: string;
  readonly userName: string;
  readonly realName: string;
  readonly password?: string | undefined;
  /** Sent to NickServ (`IDENTIFY <password>`) after registration, before joining. */
  readonly nickservPassword?: string | undefined;
  /** First pause before reconnecting; doubles per failed try up to `reconnectCapMs`. */
  readonly reconnectBaseMs: number;
  readonly reconnectCapMs: number;
  /** The channels to be in (read at every (re)connect). */
  readonly channels: () => Promise<string[]>;
  readonly log: Logger;
}

/**
 * One IRC connection on matrix-org-irc's `Client`, reconnected by us with exponential backoff
 * (the library's own retry waits a fixed delay): every drop, refused connect or timeout ends that
 * client (`retryCount: 0` makes it emit `abort`), and a new one is made after the pause. After
 * registration it identifies to NickServ when configured and joins its channels. The library's
 * flood protection is off: the bridge's remote outbox paces sends.
 */
export class IrcConnection {
  readonly #o: IrcConnectionOptions;
  #client: Client | undefined;
  #registered = false;
  #failures = 0;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #joined = new Set<string>();
  readonly #listeners: Array<(client: Client) => void> = [];
  /** Times the connection was registered (1 on the first connect). */
  connects = 0;

  constructor(options: IrcConnectionOptions) {
    this.#o = options;
  }

  /** Binds `listener` to every client this connection makes. */
  onClient(listener: (client: Client) => void): void {
    this.#listeners.push(listener);
  }

  get nick(): string | undefined {
    return this.#registered ? this.#client?.nick : undefined;
  }

  /** Registered and in the channel: a line said now reaches it. */
  inChannel(channel: string): boolean {
    return this.#registered && this.#joined.has(channel.toLowerCase());
  }

  get client(): Client | undefined {
    return this.#client;
  }

  status(): string {
    if (!this.#registered) return `IRC: not connected (${this.#failures} failed tries)`;
    return `IRC: connected to ${this.#o.host}:${this.#o.port} as ${this.nick}, in ${[...this.#joined].join(" ") || "no channel"}`;
  }

  open(): void {
    if (this.#closed) return;
    const o = this.#o;
    const client = new Client(o.host, o.nick, {
      port: o.port,
      secure: o.tls,
      userName: o.userName,
      realName: o.realName,
      ...(o.password ? { password: o.password } : {}),
      autoConnect: false,
      autoRejoin: true,
      retryCount: 0,
      floodProtection: false,
      stripColors: false,
      channels: [],
      connectionTimeout: 15_000,
    });
    this.#client = client;
    client.on("registered", () => {
      this.#onRegistered(client).catch((error: unknown) =>
        this.#o.log.warn({ err: error }, "joining the channels after connecting failed"),
      );
    });
    client.on("join", (channel: string, nick: string) => {
      if (nick === client.nick) this.#joined.add(channel.toLowerCase());
    });
    client.on("part", (channel: string, nick: string) => {
      if (nick === client.nick) this.#joined.delete(channel.toLowerCase());
    });
    client.on("kick", (channel: string, who: string) => {
      if (who !== client.nick) return;
      this.#joined.delete(channel.toLowerCase());
      client
        .join(channel)
        .catch((error: unknown) => this.#o.log.warn({ err: error, channel }, "rejoin failed"));
    });
    client.on("netError", (error: Error) => o.log.warn({ err: error }, "IRC connection error"));
    client.on("error", (message: unknown) => o.log.warn({ message }, "IRC server error"));
    client.on("abort", () => this.#dropped(client));
    for (const listener of this.#listeners) listener(client);
    client.connect();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    const client = this.#client;
    this.#registered = false;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      client.disconnect("bridge stopping", () => (clearTimeout(timer), resolve()));
    });
  }

  async join(channel: string): Promise<void> {
    if (this.#registered) await this.#client?.join(channel);
  }

  async part(channel: string): Promise<void> {
    if (this.#registered) await this.#client?.part(channel, "unbridged");
  }

  async #onRegistered(client: Client): Promise<void> {
    if (client !== this.#client) return;
    this.#registered = true;
    this.#failures = 0;
    this.connects++;
    this.#joined.clear();
    const o = this.#o;
    o.log.info({ host: o.host, port: o.port, nick: client.nick }, "IRC connected");
    // The password is never logged: only that it was sent.
    if (o.nickservPassword) await client.say("NickServ", `IDENTIFY ${o.nickservPassword}`);
    for (const channel of await o.channels()) await client.join(channel);
  }

  #dropped(client: Client): void {
    if (client !== this.#client || this.#closed) return;
    this.#registered = false;
    this.#joined.clear();
    client.removeAllListeners();
    const delay = Math.min(this.#o.reconnectBaseMs * 2 ** this.#failures, this.#o.reconnectCapMs);
    this.#failures++;
    this.#o.log.warn({ delay, tries: this.#failures }, "IRC connection lost; reconnecting");
    this.#timer = setTimeout(() => this.open(), delay);
  }
}
