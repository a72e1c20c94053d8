import { chunkToDevice } from "../../../src/outbox/chunkToDevice.ts";
import { EventTooLargeError } from "../../../src/errors.ts";
import type { ToDeviceMessages } from "../../../src/matrix/requests.ts";

function messagesFor(users: number, devices: number, payload = "x"): ToDeviceMessages {
  const messages: ToDeviceMessages = {};
  for (let u = 0; u < users; u++) {
    const perDevice: Record<string, object> = {};
    for (let d = 0; d < devices; d++) perDevice[`DEV${d}`] = { payload };
    messages[`@user${u}:example.org`] = perDevice;
  }
  return messages;
}

const count = (m: ToDeviceMessages) => Object.values(m).reduce((n, d) => n + Object.keys(d).length, 0);

describe("chunkToDevice", () => {
  test("a small map is one chunk, unchanged", () => {
    const messages = messagesFor(2, 2);
    expect(chunkToDevice(messages, { maxDevices: 250, maxBytes: 65536 })).toEqual([messages]);
  });

  test("splits by device count, keeping every message exactly once", () => {
    const messages = messagesFor(7, 10);
    const chunks = chunkToDevice(messages, { maxDevices: 25, maxBytes: 1 << 20 });
    expect(chunks.map(count)).toEqual([25, 25, 20]);
    const merged: ToDeviceMessages = {};
    for (const chunk of chunks)
      for (const [u, d] of Object.entries(chunk)) Object.assign((merged[u] ??= {}), d);
    expect(merged).toEqual(messages);
  });

  test("splits by body size; every chunk body fits", () => {
    const messages = messagesFor(20, 5, "y".repeat(1000));
    const maxBytes = 8000;
    const chunks = chunkToDevice(messages, { maxDevices: 1000, maxBytes });
    expect(chunks.length).toBeGreaterThan(10);
    for (const chunk of chunks)
      expect(Buffer.byteLength(JSON.stringify({ messages: chunk }))).toBeLessThanOrEqual(maxBytes);
    expect(chunks.map(count).reduce((a, b) => a + b)).toBe(100);
  });

  test("is deterministic whatever the key order of the input", () => {
    const a = messagesFor(30, 3);
    const reversed = Object.fromEntries(Object.entries(a).reverse());
    const limits = { maxDevices: 7, maxBytes: 65536 };
    expect(JSON.stringify(chunkToDevice(reversed, limits))).toBe(JSON.stringify(chunkToDevice(a, limits)));
  });

  test("refuses a single message bigger than a request", () => {
    expect(() =>
      chunkToDevice(messagesFor(1, 1, "z".repeat(70_000)), { maxDevices: 10, maxBytes: 65536 }),
    ).toThrow(EventTooLargeError);
  });

  test("an empty map gives no request", () => {
    expect(chunkToDevice({}, { maxDevices: 10, maxBytes: 65536 })).toEqual([]);
  });
});
