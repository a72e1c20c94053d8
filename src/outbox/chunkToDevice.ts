import type { ToDeviceMessages } from "../matrix/requests.ts";
import { EventTooLargeError } from "../errors.ts";

/** Limits of one sendToDevice request. */
export interface ToDeviceChunkLimits {
  /** Device entries per request. @default 250 */
  readonly maxDevices: number;
  /** Serialized `{messages}` body bytes per request. @default 65536 */
  readonly maxBytes: number;
}

export const DEFAULT_TO_DEVICE_LIMITS: ToDeviceChunkLimits = { maxDevices: 250, maxBytes: 65536 };

// `{"messages":{}}` plus the separators each entry adds, counted conservatively.
const ENVELOPE_BYTES = Buffer.byteLength('{"messages":{}}');

/**
 * Splits a `messages` map into requests no bigger than the limits. Deterministic: users and
 * devices are taken in sorted order and packed greedily, so a replayed call yields the same
 * chunks (and the same per-chunk txnIds). A single device's message over `maxBytes` is refused.
 */
export function chunkToDevice(messages: ToDeviceMessages, limits: ToDeviceChunkLimits): ToDeviceMessages[] {
  const chunks: ToDeviceMessages[] = [];
  let current: ToDeviceMessages = {};
  let devices = 0;
  let bytes = ENVELOPE_BYTES;

  for (const user of Object.keys(messages).sort()) {
    const perDevice = messages[user] ?? {};
    const userBytes = Buffer.byteLength(JSON.stringify(user)) + 3; // "user":{},
    for (const device of Object.keys(perDevice).sort()) {
      const entryBytes =
        Buffer.byteLength(JSON.stringify(device)) + Buffer.byteLength(JSON.stringify(perDevice[device])) + 2;
      if (ENVELOPE_BYTES + userBytes + entryBytes > limits.maxBytes) {
        throw new EventTooLargeError(
          `The to-device message for ${user} ${device}`,
          entryBytes,
          limits.maxBytes,
        );
      }
      const addsUser = current[user] === undefined;
      const cost = entryBytes + (addsUser ? userBytes : 0);
      if (devices > 0 && (devices + 1 > limits.maxDevices || bytes + cost > limits.maxBytes)) {
        chunks.push(current);
        current = {};
        devices = 0;
        bytes = ENVELOPE_BYTES;
      }
      const target = (current[user] ??= {});
      if (Object.keys(target).length === 0) bytes += userBytes;
      target[device] = perDevice[device] as object;
      bytes += entryBytes;
      devices += 1;
    }
  }
  if (devices > 0) chunks.push(current);
  return chunks;
}
