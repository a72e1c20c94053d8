// A raw IRC client for tests: registers a nick, joins channels, says lines, and keeps every line
// it receives (with its arrival time) so a test can wait for and count what reached IRC.
import { connect, type Socket } from "node:net";
import { createInterface } from "node:readline";

export interface IrcLine {
  readonly at: number;
  readonly prefix: string;
  readonly command: string;
  readonly params: string[];
}

export function parseIrcLine(raw: string, at = Date.now()): IrcLine {
  let rest = raw;
  let prefix = "";
  if (rest.startsWith(":")) {
    const space = rest.indexOf(" ");
    prefix = rest.slice(1, space);
    rest = rest.slice(space + 1);
  }
  const trailingAt = rest.indexOf(" :");
  const head = trailingAt === -1 ? rest : rest.slice(0, trailingAt);
  const params = head.split(" ").filter(Boolean);
  const command = params.shift() ?? "";
  if (trailingAt !== -1) params.push(rest.slice(trailingAt + 2));
  return { at, prefix, command, params };
}

export class IrcTestClient {
  readonly nick: string;
  readonly lines: IrcLine[] = [];
  readonly #socket: Socket;
  #closed = false;

  private constructor(nick: string, socket: Socket) {
    this.nick = nick;
    this.#socket = socket;
    createInterface({ input: socket }).on("line", (raw) => {
      const line = parseIrcLine(raw);
      if (line.command === "PING") this.send(`PONG :${line.params[0] ?? ""}`);
      this.lines.push(line);
    });
    socket.on("close", () => (this.#closed = true));
  }

  /** Connects and registers; resolves once the server welcomed us (001). */
  static async connect(port: number, nick: string): Promise<IrcTestClient> {
    const socket = connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("error", reject);
    });
    const client = new IrcTestClient(nick, socket);
    client.send(`NICK ${nick}`);
    client.send(`USER ${nick} 0 * :${nick}`);
    await client.waitFor("the welcome", (l) => l.command === "001");
    return client;
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(raw: string): void {
    this.#socket.write(`${raw}\r\n`);
  }

  async join(channel: string): Promise<void> {
    this.send(`JOIN ${channel}`);
    await this.waitFor(`joining ${channel}`, (l) => l.command === "366" && l.params[1] === channel);
  }

  say(channel: string, text: string): void {
    this.send(`PRIVMSG ${channel} :${text}`);
  }

  /** PRIVMSGs to `channel` from `nick` (the text; an ACTION as `\x01ACTION …\x01`). */
  said(channel: string, nick: string): IrcLine[] {
    return this.lines.filter(
      (l) => l.command === "PRIVMSG" && l.params[0] === channel && l.prefix.split("!")[0] === nick,
    );
  }

  /** Resolves the first line (already received or to come) `match` accepts; fails after `timeoutMs`. */
  async waitFor(what: string, match: (line: IrcLine) => boolean, timeoutMs = 20_000): Promise<IrcLine> {
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
      const found = this.lines.find(match);
      if (found) return found;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(
      `timed out waiting for ${what}; last lines:\n${this.lines
        .slice(-10)
        .map((l) => JSON.stringify(l))
        .join("\n")}`,
    );
  }

  close(): void {
    this.#socket.destroy();
  }
}
