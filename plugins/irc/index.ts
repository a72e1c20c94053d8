// The IRC bridge: channels ↔ rooms, IRC users as ghosts, Matrix users through a relay bot.
// What is guaranteed each way: plugins/irc/README.md.
import { z } from "zod";
import {
  defineBridge,
  RemoteUnavailableError,
  type BridgeConnector,
  type BridgeHost,
  type OutgoingMessage,
} from "../../src/index.ts";
import { IrcConnection } from "./IrcConnection.ts";
import { htmlToIrc, ircToHtml, stripIrcFormatting } from "./ircFormatting.ts";

const ircConfig = {
  server: z.object({
    host: z.string(),
    port: z.number().int().min(1).max(65535).default(6667),
    tls: z.boolean().default(false),
    /** The server password (PASS), if it needs one. */
    password: z.string().optional(),
  }),
  /** The relay bot's nick: Matrix users speak through it as `<name> text`. */
  nick: z.string().default("courier"),
  userName: z.string().default("courier"),
  realName: z.string().default("matrix-courier IRC bridge"),
  /** Identifies the relay bot to NickServ after connecting. */
  nickserv: z.object({ password: z.string() }).optional(),
  /** Reconnect pauses: the first, doubled per failed try up to the cap. */
  reconnect: z
    .object({
      baseMs: z.number().int().min(10).default(1000),
      capMs: z.number().int().min(10).default(60_000),
    })
    .default({ baseMs: 1000, capMs: 60_000 }),
};

const lower = (name: string) => name.toLowerCase();
const user = (nick: string) => ({ id: lower(nick), displayName: nick });

/** IRC lines for a Matrix message, before the length split: one per line of the text. */
function linesOf(message: OutgoingMessage): { action: boolean; text: string } {
  let text = message.html !== undefined ? htmlToIrc(message.html) : message.text;
  if (message.editOf !== undefined) text = `* ${text}`; // IRC has no edits: the new text, marked
  const name = message.sender.displayName;
  if (message.emote) return { action: true, text: message.relayed ? `${name} ${text}` : text };
  const lines = text.split(/\r\n|\r|\n/).filter((l) => l.length > 0);
  return { action: false, text: (message.relayed ? lines.map((l) => `<${name}> ${l}`) : lines).join("\n") };
}

export default defineBridge({
  name: "irc",
  config: ircConfig,
  connector({ config, log }): BridgeConnector {
    let host: BridgeHost | undefined;
    const connection = new IrcConnection({
      host: config.server.host,
      port: config.server.port,
      tls: config.server.tls,
      password: config.server.password,
      nick: config.nick,
      userName: config.userName,
      realName: config.realName,
      nickservPassword: config.nickserv?.password,
      reconnectBaseMs: config.reconnect.baseMs,
      reconnectCapMs: config.reconnect.capMs,
      channels: async () => (host ? host.channels() : []),
      log,
    });
    const report = (event: Parameters<BridgeHost["report"]>[0]) =>
      host
        ?.report(event)
        .catch((error: unknown) => log.error({ err: error }, "could not journal an IRC event"));

    connection.onClient((client) => {
      const said = (from: string, to: string, text: string, kind: "text" | "emote" | "notice") => {
        // Not a channel (a private message), or our own line: not bridged.
        if (!/^[#&+!]/.test(to) || from === client.nick || !from) return;
        const html = ircToHtml(text);
        void report({
          kind: "message",
          channelId: lower(to),
          sender: user(from),
          text: stripIrcFormatting(text),
          ...(html !== undefined ? { html } : {}),
          ...(kind === "emote" ? { emote: true } : kind === "notice" ? { notice: true } : {}),
        });
      };
      client.on("message", (from, to, text) => said(from, to, text, "text"));
      client.on("action", (from, to, text) => said(from, to, text, "emote"));
      client.on("notice", (from, to, text) => said(from, to, text, "notice"));
      client.on("join", (channel, nick) => {
        if (nick !== client.nick) void report({ kind: "join", channelId: lower(channel), user: user(nick) });
      });
      client.on("part", (channel, nick, reason) => {
        if (nick !== client.nick)
          void report({ kind: "leave", channelId: lower(channel), user: user(nick), reason });
      });
      client.on("kick", (channel, who, _by, reason) => {
        if (who !== client.nick)
          void report({ kind: "leave", channelId: lower(channel), user: user(who), reason });
      });
      client.on("quit", (nick, reason, channels) => {
        for (const channel of channels) {
          void report({ kind: "leave", channelId: lower(channel), user: user(nick), reason });
        }
      });
      client.on("nick", (oldNick, newNick, channels) => {
        if (oldNick === client.nick || newNick === client.nick) return;
        void report({
          kind: "rename",
          from: user(oldNick),
          to: user(newNick),
          channelIds: channels.map(lower),
        });
      });
      client.on("topic", (channel, topic, _by, message) => {
        // A change (TOPIC), not the topic the server tells us on every join (RPL_TOPIC).
        if (message.command === "TOPIC") void report({ kind: "topic", channelId: lower(channel), topic });
      });
    });

    return {
      async connect(bridgeHost) {
        host = bridgeHost;
        connection.open();
      },
      disconnect: () => connection.close(),
      async sendMessage(message) {
        const client = connection.client;
        if (!client || !connection.inChannel(message.channelId)) {
          throw new RemoteUnavailableError("IRC", `not in ${message.channelId}`);
        }
        const { action, text } = linesOf(message);
        // Written to the socket when it resolves (flood protection off): the outbox marks it sent next.
        await (action ? client.action(message.channelId, text) : client.say(message.channelId, text));
        return undefined; // IRC messages have no ids
      },
      cost(message) {
        const { action, text } = linesOf(message);
        const client = connection.client;
        const target = action ? `${message.channelId} \x01ACTION \x01` : message.channelId;
        return client ? Math.max(1, client.getSplitMessages(target, text).length) : 1;
      },
      lookupUser: async (nick) => user(nick),
      lookupChannel: async (channel) =>
        /^[#&+!]/.test(channel) ? { id: lower(channel), name: channel } : undefined,
      joinChannel: (channel) => connection.join(channel),
      leaveChannel: (channel) => connection.part(channel),
      status: () => connection.status(),
    };
  },
});
