import type { Logger } from "pino";
import { z } from "zod";
import { definePlugin, type Bot, type PluginDefinition } from "../plugins/definePlugin.ts";
import { canBackfill, type BridgeConnector, type BridgeHost } from "./BridgeConnector.ts";
import { bridgeConfigShape, type BridgeConfig } from "./bridgeConfig.ts";
import { GhostNamespace } from "./ghostLocalpart.ts";
import { Ghosts } from "./Ghosts.ts";
import { MessageMap } from "./MessageMap.ts";
import { Portals } from "./Portals.ts";
import { RemoteJournal } from "./RemoteJournal.ts";
import { RemoteOutbox, type RemoteRequest } from "./RemoteOutbox.ts";
import { deliverToRemote, matrixToRemote } from "./matrixToRemote.ts";
import { remoteToMatrix } from "./remoteToMatrix.ts";
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

  const journal = new RemoteJournal({
    store: bot.store,
    log,
    stopping: stopping.signal,
    act: remoteToMatrix({
      portals,
      ghosts,
      messages,
      once: (key) => bot.once(key),
      bot: () => bot.intent(bot.userId),
      log,
    }),
  });
  const outbox = new RemoteOutbox({
    store: bot.store,
    log,
    stopping: stopping.signal,
    rate: config.remoteRate,
    maxAttempts: config.remoteMaxAttempts,
    cost: (r: RemoteRequest) => (r.kind === "message" ? (connector.cost?.(r.message) ?? 1) : 1),
    deliver: deliverToRemote(connector, messages),
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

  matrixToRemote(bot, { name, connector, portals, ghosts, messages, outbox });

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
