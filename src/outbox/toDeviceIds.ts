import type { ToDeviceMessages } from "../matrix/requests.ts";

/**
 * The unspecced `org.matrix.msgid` field Synapse logs and clients use to tell to-device messages
 * apart; set from the request's txnId (unique per message, the same on every replay) unless the
 * sender set one.
 */
export const TO_DEVICE_MESSAGE_ID = "org.matrix.msgid";

/**
 * The messages with `messageId` in every plain-object content that has no id of its own. Pure:
 * returns new maps and leaves `messages` as it was.
 */
export function withMessageIds(messages: ToDeviceMessages, messageId: string): ToDeviceMessages {
  const out: ToDeviceMessages = {};
  for (const [user, devices] of Object.entries(messages)) {
    const stamped: Record<string, object> = {};
    for (const [device, content] of Object.entries(devices)) {
      const plain = typeof content === "object" && content !== null && !Array.isArray(content);
      stamped[device] =
        plain && !(TO_DEVICE_MESSAGE_ID in content)
          ? { ...content, [TO_DEVICE_MESSAGE_ID]: messageId }
          : content;
    }
    out[user] = stamped;
  }
  return out;
}
