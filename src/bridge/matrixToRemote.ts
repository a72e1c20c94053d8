import type { Bot } from "../plugins/definePlugin.ts";
import {
  canEdit,
  canReact,
  canRedact,
  canType,
  type BridgeConnector,
  type MatrixSender,
  type OutgoingMessage,
} from "./BridgeConnector.ts";
import type { BridgeConfig } from "./bridgeConfig.ts";
import type { Ghosts } from "./Ghosts.ts";
import { fromMatrixContent } from "./matrixContent.ts";
import type { MessageMap } from "./MessageMap.ts";
import type { Portals } from "./Portals.ts";
import type { RemoteOutbox, RemoteRequest } from "./RemoteOutbox.ts";

/** The connection of relay mode: Matrix users without a remote identity speak through it. */
export const RELAY = "relay";

export interface MatrixToRemoteParts {
  readonly name: string;
  readonly connector: BridgeConnector;
  readonly portals: Portals;
  readonly ghosts: Ghosts;
  readonly messages: MessageMap;
  readonly outbox: RemoteOutbox;
}

/**
 * Registers the Matrix side's handlers: messages (with edits and replies), redactions, reactions
 * and typing in portal rooms become requests in the remote outbox, once per event id; member
 * events give relayed senders their display names.
 */
export function matrixToRemote(bot: Bot<BridgeConfig>, parts: MatrixToRemoteParts): void {
  const { name, connector, portals, ghosts, messages, outbox } = parts;
  const config = bot.config;
  // Matrix users' display names as their member events said (kept, so a restart does not lose
  // them); the localpart until one was seen.
  const displayNames = new Map<string, string>();
  const senderOf = async (userId: string): Promise<MatrixSender> => ({
    userId,
    displayName:
      displayNames.get(userId) ??
      (await bot.store.get<string>(`name:${userId}`)) ??
      userId.slice(1, userId.indexOf(":")),
  });
  const connectionOf = (userId: string) => connector.connectionFor?.(userId) ?? RELAY;

  bot.on<Record<string, unknown>>(
    "m.room.member",
    (ctx) => {
      const name = ctx.event.content.displayname;
      const user = ctx.event.state_key;
      if (typeof name !== "string" || !user || displayNames.get(user) === name) return;
      displayNames.set(user, name);
      return bot.store.set(`name:${user}`, name);
    },
    { id: "member-names" },
  );

  bot.on<Record<string, unknown>>(
    "m.room.message",
    async (ctx) => {
      const portal = portals.byRoom(ctx.roomId);
      if (!portal) return;
      const parsed = fromMatrixContent(ctx.event.content);
      if (!parsed || parsed.text.trimStart().startsWith(`!${name}`)) return;
      const connection = connectionOf(ctx.sender);
      const relayed = connection === "relay";
      if (relayed && !config.relay) {
        await ctx.reply(
          `Not delivered to ${portal.channelId}: relay mode is off and you have no ${name} identity.`,
        );
        return;
      }
      const replyTo = parsed.replyToEvent && (await messages.remoteFor(parsed.replyToEvent));
      const replyToUser = parsed.replyToEvent && (await messages.senderOf(parsed.replyToEvent));
      const message: OutgoingMessage = {
        channelId: portal.channelId,
        eventId: ctx.event.event_id,
        sender: await senderOf(ctx.sender),
        relayed,
        text: parsed.text,
        ...(parsed.html !== undefined ? { html: parsed.html } : {}),
        emote: parsed.emote,
        ...(replyTo ? { replyTo } : {}),
        ...(replyToUser ? { replyToUser } : {}),
        ...(parsed.editOf !== undefined ? { editOf: parsed.editOf } : {}),
      };
      await outbox.enqueue({ kind: "message", message }, connection);
    },
    { id: "to-remote" },
  );

  bot.on(
    "m.room.redaction",
    async (ctx) => {
      const portal = portals.byRoom(ctx.roomId);
      const target =
        (ctx.event as unknown as { redacts?: string }).redacts ??
        (ctx.event.content as { redacts?: string }).redacts;
      if (!portal || !target || !canRedact(connector)) return;
      const remoteId = await messages.remoteFor(target);
      if (!remoteId) return;
      const request = {
        kind: "redact",
        eventId: ctx.event.event_id,
        channelId: portal.channelId,
        remoteId,
      } as const;
      await outbox.enqueue(request, connectionOf(ctx.sender));
    },
    { id: "redactions" },
  );

  bot.on<{ "m.relates_to"?: { event_id?: string; key?: string } }>(
    "m.reaction",
    async (ctx) => {
      const portal = portals.byRoom(ctx.roomId);
      const relation = ctx.event.content["m.relates_to"];
      if (!portal || !relation?.event_id || !relation.key || !canReact(connector)) return;
      const remoteId = await messages.remoteFor(relation.event_id);
      if (!remoteId) return;
      const request = {
        kind: "react",
        eventId: ctx.event.event_id,
        channelId: portal.channelId,
        remoteId,
        key: relation.key,
        sender: await senderOf(ctx.sender),
      } as const;
      await outbox.enqueue(request, connectionOf(ctx.sender));
    },
    { id: "reactions" },
  );

  const typing = new Map<string, Set<string>>();
  bot.onEphemeral<{ user_ids?: string[] }>("m.typing", async (ctx) => {
    const roomId = ctx.event.room_id;
    const portal = roomId ? portals.byRoom(roomId) : undefined;
    if (!portal || !roomId || !canType(connector)) return;
    const now = new Set(
      (ctx.event.content.user_ids ?? []).filter((u) => !ghosts.isGhost(u) && u !== bot.userId),
    );
    const before = typing.get(roomId) ?? new Set<string>();
    typing.set(roomId, now);
    for (const user of now)
      if (!before.has(user)) await connector.setTyping(portal.channelId, await senderOf(user), true);
    for (const user of before)
      if (!now.has(user)) await connector.setTyping(portal.channelId, await senderOf(user), false);
  });
}

/**
 * Hands one request of the remote outbox to the connector, through the capability it needs; an
 * edit without `editMessage` (or of a message the map does not know) is sent as a new message
 * marked `editOf`. Resolves the remote id of a sent message, when the network gives one.
 */
export function deliverToRemote(
  connector: BridgeConnector,
  messages: MessageMap,
): (request: RemoteRequest) => Promise<string | undefined> {
  return async function deliver(request: RemoteRequest): Promise<string | undefined> {
    switch (request.kind) {
      case "message": {
        const { message } = request;
        if (message.editOf !== undefined && canEdit(connector)) {
          const remoteId = await messages.remoteFor(message.editOf);
          if (remoteId !== undefined) {
            await connector.editMessage({ ...message, remoteId });
            return undefined;
          }
        }
        return connector.sendMessage(message);
      }
      case "redact":
        if (canRedact(connector)) await connector.redactMessage(request.channelId, request.remoteId);
        return undefined;
      case "react":
        if (canReact(connector)) {
          await connector.react(request.channelId, request.remoteId, request.key, request.sender);
        }
        return undefined;
    }
  };
}
