// The key endpoints of a homeserver, in memory, for crypto tests without Synapse: /keys/upload,
// /keys/query and /keys/claim, for devices named by `?user_id=&device_id=` (how the framework's
// devices ask) or by the path of an in-process OlmMachine's request (`handle`).
import { createServer, type Server } from "node:http";
import { DeviceId, OlmMachine, UserId } from "@matrix-org/matrix-sdk-crypto-wasm";
import { pino } from "pino";
import { CryptoDevice, type DeviceToDevice } from "../../src/crypto/CryptoDevice.ts";
import type { DeviceId as DeviceIdOf, UserId as UserIdOf } from "../../src/ids.ts";
import type { MatrixClient } from "../../src/matrix/MatrixClient.ts";

interface Uploaded {
  deviceKeys: Record<string, unknown> | undefined;
  oneTimeKeys: Map<string, unknown>;
}

export class KeyServer {
  readonly #server: Server;
  readonly #devices = new Map<string, Uploaded>(); // "user\0device"
  readonly url: string;

  private constructor(server: Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  static async start(): Promise<KeyServer> {
    const holder: { keys?: KeyServer } = {};
    const server = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk));
      req.on("end", () => {
        const url = new URL(req.url ?? "/", "http://x");
        const as = `${url.searchParams.get("user_id")}\u0000${url.searchParams.get("device_id")}`;
        const answer = holder.keys!.handle(url.pathname.replace("/_matrix/client/v3/", ""), body, as);
        res.writeHead(answer ? 200 : 404, { "content-type": "application/json" });
        res.end(JSON.stringify(answer ?? { errcode: "M_UNRECOGNIZED", error: url.pathname }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    holder.keys = new KeyServer(server, `http://127.0.0.1:${port}`);
    return holder.keys;
  }

  /** Answers one key request of `as` ("user\0device"); undefined for an unknown endpoint. */
  handle(endpoint: string, body: string, as: string): object | undefined {
    const request = JSON.parse(body || "{}") as Record<string, Record<string, unknown>>;
    if (endpoint === "keys/upload") {
      const device = this.#device(as);
      if (request.device_keys) device.deviceKeys = request.device_keys;
      for (const [id, key] of Object.entries(request.one_time_keys ?? {})) device.oneTimeKeys.set(id, key);
      return { one_time_key_counts: { signed_curve25519: device.oneTimeKeys.size } };
    }
    if (endpoint === "keys/query") {
      const deviceKeys: Record<string, Record<string, unknown>> = {};
      for (const user of Object.keys(request.device_keys ?? {})) {
        deviceKeys[user] = {};
        for (const [key, device] of this.#devices) {
          const [owner, deviceId] = key.split("\u0000") as [string, string];
          if (owner === user && device.deviceKeys) deviceKeys[user][deviceId] = device.deviceKeys;
        }
      }
      return { device_keys: deviceKeys, failures: {} };
    }
    if (endpoint === "keys/claim") {
      const claimed: Record<string, Record<string, Record<string, unknown>>> = {};
      for (const [user, devices] of Object.entries(request.one_time_keys ?? {})) {
        for (const deviceId of Object.keys(devices as object)) {
          const device = this.#devices.get(`${user}\u0000${deviceId}`);
          const first = device?.oneTimeKeys.entries().next().value;
          if (!device || !first) continue;
          device.oneTimeKeys.delete(first[0]);
          ((claimed[user] ??= {})[deviceId] ??= {})[first[0]] = first[1];
        }
      }
      return { one_time_keys: claimed, failures: {} };
    }
    return undefined;
  }

  #device(as: string): Uploaded {
    let device = this.#devices.get(as);
    if (!device) {
      device = { deviceKeys: undefined, oneTimeKeys: new Map() };
      this.#devices.set(as, device);
    }
    return device;
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

/** Sends an in-process OlmMachine's key requests (upload, query, claim) to `keys` as `as` ("user\0device"). */
export async function serveKeyRequests(keys: KeyServer, machine: OlmMachine, as: string): Promise<void> {
  for (const request of await machine.outgoingRequests()) {
    const endpoint = ["keys/upload", "keys/query", "keys/claim"][request.type as number];
    if (endpoint && request.id)
      await machine.markRequestAsSent(
        request.id,
        request.type,
        JSON.stringify(keys.handle(endpoint, request.body, as)),
      );
  }
}

/** A user's device: a plain OlmMachine in memory, its keys uploaded to `keys`. */
export async function userMachine(keys: KeyServer, user: string, device: string): Promise<OlmMachine> {
  const machine = await OlmMachine.initialize(new UserId(user), new DeviceId(device));
  await serveKeyRequests(keys, machine, `${user}\u0000${device}`);
  return machine;
}

/**
 * A device of the framework in memory (nothing persisted), talking to `client`'s key server; its
 * to-device requests are collected in `journaled` instead of an outbox.
 */
export function memoryDevice(
  client: MatrixClient,
  user: string,
  journaled: DeviceToDevice[],
): Promise<CryptoDevice> {
  return CryptoDevice.load({
    userId: user as UserIdOf,
    deviceId: "COURIER" as DeviceIdOf,
    storeKey: new Uint8Array(32).fill(7),
    restore: async () => {},
    persisted: async () => {},
    client,
    sendToDevice: async (request) => {
      journaled.push(request);
    },
    onRoomKeys: () => {},
    log: pino({ level: "silent" }),
  });
}
