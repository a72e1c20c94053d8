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
import type { Client } from "matrix-org-irc";
import { IrcConnection } from "./IrcConnection.ts";
import { escapeHtml, htmlToIrc, ircToHtml, stripIrcFormatting } from "./ircFormatting.ts";

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
  /**
   * One IRC connection per Matrix user (nick: their display name + `suffix`) instead of the relay
   * bot; made when they first speak, and joined to the channels they speak in.
   */
  puppets: z
    .object({ enabled: z.boolean().default(false), suffix: z.string().default("[m]") })
    .default({ enabled: false, suffix: "[m]" }),
  /** Reconnect pauses: the first, doubled per failed try up to the cap. */
  reconnect: z
    .object({
      baseMs: z.number().int().min(10).default(1000),
      capMs: z.number().int().min(10).default(60_000),
    })
    .default({ baseMs: 1000, capMs: 60_000 }),
};

const lower = (name: string) => name.toLowerCase();

/** An IRC nick for a Matrix user: the characters IRC allows (RFC 2812 `nickname`), not starting with a digit or `-`. */
function nickFor(displayName: string, userId: string, suffix: string): string {
  const clean = (text: string) => text.replace(/[^A-Za-z0-9[\]\\`_^{|}-]/g, "").replace(/^[0-9-]+/, "");
  const base = clean(displayName) || clean(userId.slice(1, userId.indexOf(":"))) || "matrix";
  return `${base.slice(0, 16)}${suffix}`;
}
const user = (nick: string) => ({ id: lower(nick), displayName: nick });

/** IRC lines for a Matrix message, before the length split: one per line of the text. */
/** Longest wait for the server's answer to the PING that follows a message. */
const READ_TIMEOUT_MS = 10_000;
let pings = 0;

/**
 * Resolves once the server has read everything `client` wrote before: it answers a PING with a
 * token of ours (`PONG <server> <token>`), in order. Rejects (the message is sent again: a
 * duplicate at worst) when the answer does not come in time.
 */
function serverRead(client: Client): Promise<void> {
  const token = `courier-${process.pid}-${++pings}`;
  return new Promise<void>((resolve, reject) => {
    const answered = (message: { command?: string; args?: string[] }) => {
      if (message.command !== "PONG" || !message.args?.includes(token)) return;
      clearTimeout(timer);
      client.off("raw", answered);
      resolve();
    };
    const timer = setTimeout(() => {
      client.off("raw", answered);
      reject(new RemoteUnavailableError("IRC", `no answer to a PING in ${READ_TIMEOUT_MS} ms`));
    }, READ_TIMEOUT_MS);
    client.on("raw", answered);
    client.send("PING", token).catch((error: unknown) => {
      clearTimeout(timer);
      client.off("raw", answered);
      reject(error instanceof Error ? error : new Error(String(error)));
    });
  });
}

function linesOf(message: OutgoingMessage): { action: boolean; text: string } {
  let text = message.html !== undefined ? htmlToIrc(message.html) : message.text;
  if (message.editOf !== undefined) text = `* ${text}`; // IRC has no edits: the new text, marked
  // IRC has no replies: address the person replied to, as IRC users do.
  if (message.replyToUser && !message.emote) text = `${message.replyToUser.displayName}: ${text}`;
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
    // Names IRC users address Matrix users by (their relayed display name, their puppet's nick).
    const matrixUsers = new Map<string, string>();
    // Matrix users' own connections (puppets): they only send; the relay connection listens.
    const puppets = new Map<string, { connection: IrcConnection; channels: Set<string> }>();
    const puppetFor = (message: OutgoingMessage): IrcConnection => {
      const existing = puppets.get(message.sender.userId);
      if (existing) {
        existing.channels.add(message.channelId);
        return existing.connection;
      }
      const channels = new Set([message.channelId]);
      const puppet = new IrcConnection({
        host: config.server.host,
        port: config.server.port,
        tls: config.server.tls,
        password: config.server.password,
        nick: nickFor(message.sender.displayName, message.sender.userId, config.puppets.suffix),
        userName: config.userName,
        realName: `${message.sender.userId} via matrix-courier`,
        reconnectBaseMs: config.reconnect.baseMs,
        reconnectCapMs: config.reconnect.capMs,
        channels: async () => [...channels],
        log: log.child({ puppet: message.sender.userId }),
      });
      puppets.set(message.sender.userId, { connection: puppet, channels });
      puppet.open();
      return puppet;
    };
    /** A nick of ours (the relay bot or a puppet): its lines and moves are not bridged back. */
    const ours = (nick: string): boolean =>
      lower(nick) === lower(connection.nick ?? config.nick) ||
      [...puppets.values()].some(
        (p) => p.connection.nick !== undefined && lower(p.connection.nick) === lower(nick),
      );
    const report = (event: Parameters<BridgeHost["report"]>[0]) =>
      host
        ?.report(event)
        .catch((error: unknown) => log.error({ err: error }, "could not journal an IRC event"));

    connection.onClient((client) => {
      const said = (from: string, to: string, text: string, kind: "text" | "emote" | "notice") => {
        // Not a channel (a private message), or our own line: not bridged.
        if (!/^[#&+!]/.test(to) || !from || ours(from)) return;
        let html = ircToHtml(text);
        // `alice: text` addressed to a Matrix user we relayed: a mention (a pill and m.mentions).
        const addressed = /^([^\s:,]+)[:,]\s+([\s\S]*)$/.exec(text);
        const mentioned = addressed && matrixUsers.get(lower(addressed[1]!));
        if (addressed && mentioned) {
          const rest = addressed[2]!;
          html = `<a href="https://matrix.to/#/${escapeHtml(mentioned)}">${escapeHtml(addressed[1]!)}</a>: ${ircToHtml(rest) ?? escapeHtml(rest)}`;
        }
        void report({
          kind: "message",
          channelId: lower(to),
          sender: user(from),
          text: stripIrcFormatting(text),
          ...(html !== undefined ? { html } : {}),
          ...(mentioned ? { mentions: [mentioned] } : {}),
          ...(kind === "emote" ? { emote: true } : kind === "notice" ? { notice: true } : {}),
        });
      };
      client.on("message", (from, to, text) => said(from, to, text, "text"));
      client.on("action", (from, to, text) => said(from, to, text, "emote"));
      client.on("notice", (from, to, text) => said(from, to, text, "notice"));
      client.on("join", (channel, nick) => {
        if (!ours(nick)) void report({ kind: "join", channelId: lower(channel), user: user(nick) });
      });
      client.on("part", (channel, nick, reason) => {
        if (!ours(nick)) void report({ kind: "leave", channelId: lower(channel), user: user(nick), reason });
      });
      client.on("kick", (channel, who, _by, reason) => {
        if (!ours(who)) void report({ kind: "leave", channelId: lower(channel), user: user(who), reason });
      });
      client.on("quit", (nick, reason, channels) => {
        if (ours(nick)) return;
        for (const channel of channels) {
          void report({ kind: "leave", channelId: lower(channel), user: user(nick), reason });
        }
      });
      client.on("nick", (oldNick, newNick, channels) => {
        if (ours(oldNick) || ours(newNick)) return;
        void report({
          kind: "rename",
          from: user(oldNick),
          to: user(newNick),
          channelIds: channels.map(lower),
        });
      });
      // Channel operators (+o) are moderators (power level 50) in the room.
      const rank = (channel: string, mode: string, nick: string | undefined, level: number) => {
        if (mode === "o" && nick && !ours(nick)) {
          void report({ kind: "power", channelId: lower(channel), user: user(nick), level });
        }
      };
      client.on("+mode", (channel, _by, mode, nick) => rank(channel, mode, nick, 50));
      client.on("-mode", (channel, _by, mode, nick) => rank(channel, mode, nick, 0));
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
      async disconnect() {
        await Promise.all(
          [connection, ...[...puppets.values()].map((p) => p.connection)].map((c) => c.close()),
        );
      },
      connectionFor: (userId) => (config.puppets.enabled ? userId : "relay"),
      async sendMessage(message) {
        const via = message.relayed ? connection : puppetFor(message);
        matrixUsers.set(lower(message.sender.displayName), message.sender.userId);
        if (via.nick !== undefined && via !== connection)
          matrixUsers.set(lower(via.nick), message.sender.userId);
        const client = via.client;
        if (!client || !via.inChannel(message.channelId)) {
          // A puppet joins a channel the first time its user speaks there.
          if (via !== connection && via.nick !== undefined) await via.join(message.channelId);
          throw new RemoteUnavailableError("IRC", `not in ${message.channelId}`);
        }
        const { action, text } = linesOf(message);
        await (action ? client.action(message.channelId, text) : client.say(message.channelId, text));
        // Written to the socket is not read by the server: a crash now would reset the connection
        // and the server could drop what it had not read. The outbox marks the message sent once
        // the server answered a PING sent after it (servers answer in order).
        await serverRead(client);
        return undefined; // IRC messages have no ids
      },
      cost(message) {
        const { action, text } = linesOf(message);
        const client = (message.relayed ? connection : puppets.get(message.sender.userId)?.connection)
          ?.client;
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
