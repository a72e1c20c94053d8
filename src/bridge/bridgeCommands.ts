import type { CommandContext } from "../plugins/definePlugin.ts";
import type { BridgeConnector } from "./BridgeConnector.ts";
import type { PortalRoomOptions, Portals } from "./Portals.ts";

export interface BridgeCommandOptions {
  readonly name: string;
  /** Commands only here, when set. */
  readonly adminRoom: string | undefined;
  readonly portals: Portals;
  readonly connector: BridgeConnector;
  readonly roomOptions: PortalRoomOptions;
  readonly pending: () => Promise<{ toRemote: number; fromRemote: number }>;
}

const USAGE = (name: string) =>
  `usage: !${name} link <channel> [room id] (this room when none) | !${name} create <channel> | !${name} unlink <channel> | !${name} list | !${name} status`;

/** `!<bridge> link|create|unlink|list|status`: answers in the room. */
export async function runBridgeCommand<C>(ctx: CommandContext<C>, o: BridgeCommandOptions): Promise<unknown> {
  if (o.adminRoom !== undefined && ctx.roomId !== o.adminRoom) {
    return ctx.reply(`Bridge commands are taken in the bridge's admin room only.`);
  }
  const [sub, given, roomId] = ctx.command.args;
  const channelId = given && ((await o.connector.lookupChannel(given))?.id ?? given);
  switch (sub) {
    case "link": {
      if (!channelId) return ctx.reply(USAGE(o.name));
      try {
        const portal = await o.portals.link(channelId, roomId ?? ctx.roomId);
        await o.connector.joinChannel?.(channelId);
        return ctx.reply(`Bridged ${portal.channelId} to ${portal.roomId}.`);
      } catch (error) {
        return ctx.reply(`Not linked: ${(error as Error).message}`);
      }
    }
    case "create": {
      if (!channelId) return ctx.reply(USAGE(o.name));
      const channel = await o.connector.lookupChannel(channelId);
      if (!channel) return ctx.reply(`No channel ${channelId} on ${o.name}.`);
      const portal = await o.portals.create(channel, {
        ...o.roomOptions,
        invite: [...new Set([...o.roomOptions.invite, ctx.sender])],
      });
      await o.connector.joinChannel?.(channelId);
      return ctx.reply(`Bridged ${portal.channelId} to ${portal.roomId}.`);
    }
    case "unlink": {
      if (!channelId) return ctx.reply(USAGE(o.name));
      const portal = await o.portals.unlink(channelId);
      if (!portal) return ctx.reply(`${channelId} is not bridged.`);
      await o.connector.leaveChannel?.(channelId);
      return ctx.reply(`${channelId} is no longer bridged to ${portal.roomId}.`);
    }
    case "list": {
      const all = o.portals.all();
      if (all.length === 0) return ctx.reply("No channel is bridged.");
      return ctx.reply(all.map((p) => `${p.channelId} ↔ ${p.roomId}`).join("\n"));
    }
    case "status": {
      const pending = await o.pending();
      const line = o.connector.status?.() ?? "";
      return ctx.reply(
        `${o.portals.all().length} portal(s); waiting: ${pending.toRemote} to ${o.name}, ${pending.fromRemote} to Matrix. ${line}`.trim(),
      );
    }
    default:
      return ctx.reply(USAGE(o.name));
  }
}
