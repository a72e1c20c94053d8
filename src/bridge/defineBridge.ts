import type { Logger } from "pino";
import { z } from "zod";
import { definePlugin, type Bot, type PluginDefinition } from "../plugins/definePlugin.ts";
import {
  canBackfill,
  canEdit,
  canReact,
  canRedact,
  canType,
  type BridgeConnector,
  type BridgeHost,
  type OutgoingMessage,
} from "./BridgeConnector.ts";
import { bridgeConfigShape, type BridgeConfig } from "./bridgeConfig.ts";
import { GhostNamespace } from "./ghostLocalpart.ts";
import { Ghosts } from "./Ghosts.ts";
import { MessageMap } from "./MessageMap.ts";
import { Portals } from "./Portals.ts";
import { RemoteJournal, type JournaledRemote } from "./RemoteJournal.ts";
import { RemoteOutbox, type RemoteRequest } from "./RemoteOutbox.ts";
import { fromMatrixContent } from "./matrixContent.ts";
import { runBridgeCommand } from "./bridgeCommands.ts";

export interface BridgeDefinition<S extends z.ZodRawShape> {
  /** The plugin's name (`[a-z][a-z0-9-]*`); also the management command (`!<name> list`). */
  readonly name: string;
  /** The connector's own config fields, beside the bridge's (`bridgeConfig.ts`). */
  readonly config?: S;
  /** Makes the connector, once, when the plugin is set up. */
  connector(setup: {
    readonly config: z.output<z.ZodObject<S>> & BridgeConfig;
    readonly log: Logger;
  }): BridgeConnector;
}

/** What a running bridge exposes to its plugin's code and tests. */
export interface BridgeRuntime {
  readonly portals: Portals;
  readonly messages: MessageMap;
  readonly ghosts: Ghosts;
}

/**
 * A bridge as a plugin: the framework's side of it (ghosts, portals, the message map, the
 * remote journal and the remote outbox, management commands) around the connector the author
 * writes. See docs/bridges.md.
 */
export function defineBridge<S extends z.ZodRawShape>(definition: BridgeDefinition<S>): PluginDefinition {
  const schema = z.object({ ...bridgeConfigShape, ...(definition.config ?? ({} as S)) });
  return definePlugin({
    name: definition.name,
    config: schema,
    setup(bot) {
      setupBridge(definition, bot as unknown as Bot<z.output<z.ZodObject<S>> & BridgeConfig>);
    },
  });
}

function setupBridge<S extends z.ZodRawShape>(
  definition: BridgeDefinition<S>,
  bot: Bot<z.output<z.ZodObject<S>> & BridgeConfig>,
): void {
  const { name } = definition;
  const config = bot.config;
  const log = bot.log;
  const server = bot.userId.slice(bot.userId.indexOf(":") + 1);
  const namespace = new GhostNamespace(config.ghosts ?? `courier_${name}_{id}`, server);
  const aliasPrefix = config.aliasPrefix ?? `${name}_`;
  const connector = definition.connector({ config, log });
  const stopping = new AbortController();
  let markConnected: () => void = () => {};
  const connected = new Promise<void>((resolve) => (markConnected = resolve));
  const portals = new Portals(
    bot.store,
    () => bot.intent(bot.userId),
    // A new room gets the channel's recent history, when the connector can fetch it; what it
    // reports goes through the remote journal like any remote event (deduplicated by remote id).
    async (portal) => {
      if (config.backfill === 0 || !canBackfill(connector)) return;
      // After connect (a portal from config is made before it); not awaited: history may be slow.
      void connected
        .then(() => connector.backfill(portal.channelId, config.backfill))
        .catch((error: unknown) => log.warn({ err: error, channel: portal.channelId }, "backfill failed"));
    },
  );
  const messages = new MessageMap(bot.store);
  const ghosts = new Ghosts({
    namespace,
    store: bot.store,
    intent: (id) => bot.intent(id),
    botUserId: bot.userId,
    log,
  });
  // Matrix users' display names as their member events said (kept, so a restart does not lose
  // them); the localpart until one was seen.
  const displayNames = new Map<string, string>();
  const senderOf = async (userId: string) => ({
    userId,
    displayName:
      displayNames.get(userId) ??
      (await bot.store.get<string>(`name:${userId}`)) ??
      userId.slice(1, userId.indexOf(":")),
  });

  const journal = new RemoteJournal({
    store: bot.store,
    log,
    stopping: stopping.signal,
    act: (entry) => actOnRemote(entry),
  });
  const outbox = new RemoteOutbox({
    store: bot.store,
    log,
    stopping: stopping.signal,
    rate: config.remoteRate,
    maxAttempts: config.remoteMaxAttempts,
    cost: (r: RemoteRequest) => (r.kind === "message" ? (connector.cost?.(r.message) ?? 1) : 1),
    deliver: (request) => deliver(request),
    sent: async (request, remoteId) => {
      if (request.kind === "message" && remoteId !== undefined && request.message.editOf === undefined) {
        await messages.set(request.message.channelId, remoteId, request.message.eventId);
      }
    },
    failed: async (request, reason) => {
      const channelId = request.kind === "message" ? request.message.channelId : request.channelId;
      const eventId = request.kind === "message" ? request.message.eventId : request.eventId;
      const portal = portals.byChannel(channelId);
      if (!portal) return;
      await bot.once(`remote-failed:${eventId}`).send(portal.roomId, {
        msgtype: "m.notice",
        body: `Not delivered to ${channelId}: ${reason}`,
        "m.relates_to": { "m.in_reply_to": { event_id: eventId } },
      });
    },
  });

  async function deliver(request: RemoteRequest): Promise<string | undefined> {
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
  }

  async function actOnRemote(entry: JournaledRemote): Promise<void> {
    const { event } = entry;
    const portal = portals.byChannel(entry.lane);
    if (!portal) {
      log.debug({ channel: entry.lane }, "remote event of a channel without a portal; ignored");
      return;
    }
    const { roomId } = portal;
    const sends = bot.once(`remote:${entry.lane}:${entry.id}`);
    switch (event.kind) {
      case "message": {
        const ghost = await ghosts.ensure(event.sender, roomId);
        let content: Record<string, unknown> = {
          msgtype: event.emote ? "m.emote" : event.notice ? "m.notice" : "m.text",
          body: event.text,
          ...(event.html ? { format: "org.matrix.custom.html", formatted_body: event.html } : {}),
        };
        const replyTo = event.replyTo && (await messages.eventFor(entry.lane, event.replyTo));
        if (replyTo) content["m.relates_to"] = { "m.in_reply_to": { event_id: replyTo } };
        if (event.mentions?.length) content["m.mentions"] = { user_ids: event.mentions };
        const edited = event.editOf && (await messages.eventFor(entry.lane, event.editOf));
        if (edited) {
          content = {
            ...content,
            body: `* ${event.text}`,
            "m.new_content": { ...content },
            "m.relates_to": { rel_type: "m.replace", event_id: edited },
          };
        }
        const enqueued = await sends.send(roomId, content, { as: ghost });
        if (!edited) {
          // Who sent it (replies to it name them on the remote side) and, with a remote id, the
          // map entry: filled once the homeserver gave the event id; not awaited, so one slow
          // room does not hold the channel's lane.
          const remoteId = event.id;
          void enqueued
            .delivered()
            .then(async ({ eventId }) => {
              if (!eventId) return;
              await messages.setSender(eventId, event.sender);
              if (remoteId !== undefined) await messages.set(entry.lane, remoteId, eventId);
            })
            .catch((error: unknown) => log.warn({ err: error }, "no event id for the message map"));
        }
        return;
      }
      case "redaction": {
        const target = await messages.eventFor(entry.lane, event.target);
        if (!target) return;
        await sends.redact(roomId, target, undefined, { as: await ghosts.ensure(event.sender, roomId) });
        return;
      }
      case "join":
        await ghosts.ensure(event.user, roomId);
        return;
      case "leave":
        await ghosts.leave(event.user.id, roomId).catch((error: unknown) => {
          log.debug({ err: error }, "ghost could not leave (not in the room)");
        });
        return;
      case "rename":
        await ghosts.ensure(event.to, roomId);
        await ghosts.leave(event.from.id, roomId).catch(() => {});
        return;
      case "topic":
        await sends.setState(roomId, "m.room.topic", "", { topic: event.topic });
        return;
    }
  }

  const host: BridgeHost = {
    log,
    report: (event) => journal.report(event),
    channels: async () => portals.all().map((p) => p.channelId),
  };

  bot.claimUsers(namespace.pattern());
  bot.claimAliases(
    new RegExp(`^#${aliasPrefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}.+:`),
    async (alias) => {
      const channelId = alias.slice(1 + aliasPrefix.length, alias.lastIndexOf(":"));
      const channel = await connector.lookupChannel(channelId);
      if (!channel) return false;
      await portals.create(channel, config.portalRooms, alias.slice(1, alias.lastIndexOf(":")));
      await connector.joinChannel?.(channel.id);
      return true;
    },
  );

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
      const connection = connector.connectionFor?.(ctx.sender) ?? "relay";
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
      await outbox.enqueue(request, connector.connectionFor?.(ctx.sender) ?? "relay");
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
      await outbox.enqueue(request, connector.connectionFor?.(ctx.sender) ?? "relay");
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

  bot.command(
    name,
    (ctx) =>
      runBridgeCommand(ctx, {
        name,
        adminRoom: config.adminRoom,
        portals,
        connector,
        roomOptions: config.portalRooms,
        pending: async () => ({
          toRemote: (await bot.store.list("rout:")).length,
          fromRemote: (await bot.store.list("rin:")).length,
        }),
      }),
    { usage: "link|unlink|list|status …", help: `manages the ${name} bridge`, minPowerLevel: 50 },
  );

  bot.onStart(async () => {
    await portals.load();
    for (const wanted of config.portals) {
      // The connector's id for it (IRC channel names are case-insensitive: lower-cased).
      const channel = (await connector.lookupChannel(wanted.channel)) ?? {
        id: wanted.channel,
        name: wanted.channel,
      };
      if (portals.byChannel(channel.id)) continue;
      if (wanted.room) await portals.link(channel.id, wanted.room);
      else await portals.create(channel, config.portalRooms);
    }
    const replayed = await journal.start();
    const waiting = await outbox.start();
    log.info({ portals: portals.all().length, replayed, waiting }, "bridge started");
    await connector.connect(host);
    markConnected();
  });

  bot.onStop(async () => {
    stopping.abort();
    await connector.disconnect();
  });
}
