import type { Logger } from "pino";
import type { Intent, SendContext } from "../plugins/definePlugin.ts";
import type { Ghosts } from "./Ghosts.ts";
import type { MessageMap } from "./MessageMap.ts";
import type { Portals } from "./Portals.ts";
import type { JournaledRemote } from "./RemoteJournal.ts";

export interface RemoteToMatrixParts {
  readonly portals: Portals;
  readonly ghosts: Ghosts;
  readonly messages: MessageMap;
  /** The send helpers keyed by `key` (`bot.once`). */
  readonly once: (key: string) => SendContext<unknown>;
  /** The bot's account actions (reading the power levels it changes). */
  readonly bot: () => Intent;
  readonly log: Logger;
}

/**
 * Acts on one journaled remote event in Matrix: its ghost joins and speaks, a redaction, a
 * membership change, a topic. Its sends are keyed by `remote:<channel>:<id>`, so acting again
 * after a crash collapses onto the transactions already journaled. Does I/O.
 */
export function remoteToMatrix(parts: RemoteToMatrixParts): (entry: JournaledRemote) => Promise<void> {
  const { portals, ghosts, messages, once, bot, log } = parts;
  return async function actOnRemote(entry: JournaledRemote): Promise<void> {
    const { event } = entry;
    const portal = portals.byChannel(entry.lane);
    if (!portal) {
      log.debug({ channel: entry.lane }, "remote event of a channel without a portal; ignored");
      return;
    }
    const { roomId } = portal;
    const sends = once(`remote:${entry.lane}:${entry.id}`);
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
      case "power": {
        const ghost = await ghosts.ensure(event.user, roomId);
        const levels = await bot().getState(roomId, "m.room.power_levels");
        // Never written from scratch: that would take everyone else's levels away.
        if (!levels) return void log.warn({ roomId }, "no power levels to change");
        const users = { ...(levels.users as Record<string, number> | undefined) };
        const usersDefault = typeof levels.users_default === "number" ? levels.users_default : 0;
        if ((users[ghost] ?? usersDefault) === event.level) return;
        if (event.level === usersDefault) delete users[ghost];
        else users[ghost] = event.level;
        const enqueued = await sends.setState(roomId, "m.room.power_levels", "", { ...levels, users });
        // The next change of this channel reads the levels again: wait until this one is in. A
        // refusal (the bot may not change levels in a room it was invited to) is logged, not retried.
        await enqueued
          .delivered()
          .catch((error: unknown) => log.warn({ err: error, roomId }, "power level not changed"));
        return;
      }
      case "topic":
        await sends.setState(roomId, "m.room.topic", "", { topic: event.topic });
        return;
    }
  };
}
