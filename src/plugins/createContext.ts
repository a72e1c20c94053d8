import type { Logger } from "pino";
import type { CauseScope } from "../outbox/CauseScope.ts";
import type { Enqueued, EnqueueOptions } from "../outbox/types.ts";
import { roomId as toRoomId, userId as toUserId } from "../ids.ts";
import type { EventContext, Intent, SendAs, SendContext } from "./definePlugin.ts";
import type { PluginStore } from "../store/PluginStore.ts";
import type { MatrixEvent } from "./events.ts";

const sendOptions = (opts: SendAs | undefined): EnqueueOptions =>
  opts?.as ? { sender: toUserId(opts.as) } : {};
const asContent = (content: string | object): object =>
  typeof content === "string" ? { msgtype: "m.notice", body: content } : content;

export interface SendContextParts<C> {
  readonly scope: CauseScope;
  /** The cause scope for `ctx.once(key)`. */
  readonly keyed: (key: string) => CauseScope;
  readonly config: C;
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly intent: (userId: string) => Intent;
  readonly store: PluginStore;
}

/** The send helpers of a handler, all bound to one cause scope of the outbox. */
export function createSendContext<C>(parts: SendContextParts<C>): SendContext<C> {
  const { scope, config, log, signal, intent, store } = parts;
  return {
    config,
    log,
    signal,
    intent,
    store,
    once: (key) => createSendContext({ ...parts, scope: parts.keyed(key) }),
    send: (roomId, content, opts) =>
      scope.send(toRoomId(roomId), content, {
        ...sendOptions(opts),
        ...(opts?.eventType ? { eventType: opts.eventType } : {}),
      }),
    setState: (roomId, eventType, stateKey, content, opts) =>
      scope.sendState(toRoomId(roomId), eventType, stateKey, content, sendOptions(opts)),
    redact: (roomId, eventId, reason, opts) =>
      scope.redact(toRoomId(roomId), eventId, reason, sendOptions(opts)),
    sendToDevice: (userId, deviceId, type, content, opts) =>
      scope.sendToDevice(type, { [toUserId(userId)]: { [deviceId]: content } }, sendOptions(opts)),
    sendToDeviceMany: (type, messages, opts) => scope.sendToDevice(type, messages, sendOptions(opts)),
  };
}

/** Adds the room-event helpers (reply, react, edit) to the send helpers. */
export function createEventContext<C, E>(base: SendContext<C>, event: MatrixEvent<E>): EventContext<C, E> {
  const relate = (
    roomId: string,
    content: object,
    opts: SendAs | undefined,
    eventType?: string,
  ): Promise<Enqueued> => base.send(roomId, content, { ...opts, ...(eventType ? { eventType } : {}) });
  return {
    ...base,
    event,
    roomId: event.room_id,
    sender: event.sender,
    reply: (content, opts) =>
      relate(
        event.room_id,
        { ...asContent(content), "m.relates_to": { "m.in_reply_to": { event_id: event.event_id } } },
        opts,
      ),
    react: (key, opts) =>
      relate(
        event.room_id,
        { "m.relates_to": { rel_type: "m.annotation", event_id: event.event_id, key } },
        opts,
        "m.reaction",
      ),
    edit: (eventId, content, opts) => {
      const replacement = asContent(content) as { body?: string };
      return relate(
        event.room_id,
        {
          ...replacement,
          body: `* ${replacement.body ?? ""}`,
          "m.new_content": replacement,
          "m.relates_to": { rel_type: "m.replace", event_id: eventId },
        },
        opts,
      );
    },
  };
}
