import type { Logger } from "pino";
import type { MatrixRequest } from "../matrix/requests.ts";
import type { MatrixClient } from "../matrix/MatrixClient.ts";
import { MatrixError } from "../matrix/MatrixError.ts";
import type { OutboxTransport } from "./options.ts";
import { userId as toUserId, type DeviceId } from "../ids.ts";

/** The device the bot and, with `outbox.ghostDevices`, every ghost send from and receive to-device on. */
export const COURIER_DEVICE_ID = "COURIER" as DeviceId;

/**
 * The outbox's transport: sends each request with the client. When a request names a device (its
 * `deviceId`, device masquerading), it first makes sure, once per user and device in this
 * process, that the device exists, creating it with an appservice login when it does not.
 * Synapse answers 400 `M_UNKNOWN_DEVICE` to a masquerade as a missing device; that answer (a
 * device deleted behind our back) provisions it again and resends once. Requests without a
 * device pass straight through.
 *
 * A homeserver that refuses the look or the login for good (a 4xx other than 429: no appservice
 * login, an unregistered ghost) gets the request anyway: one that ignores `device_id` sends it
 * as before (with its in-memory dedupe only), one that needs the device says `M_UNKNOWN_DEVICE`,
 * and the request is dead-lettered with that reason. Network errors, 5xx and 429 reject, so the
 * outbox retries.
 */
export class MatrixTransport implements OutboxTransport {
  readonly #client: MatrixClient;
  readonly #botUserId: string;
  readonly #log: Logger | undefined;
  /** Devices known to exist, or being made to, by "user\0device". */
  readonly #ready = new Map<string, Promise<void>>();

  constructor(client: MatrixClient, botUserId: string, log?: Logger) {
    this.#client = client;
    this.#botUserId = botUserId;
    this.#log = log;
  }

  async send(request: MatrixRequest, options?: { timeoutMs?: number }): Promise<unknown> {
    const { deviceId } = request;
    if (!deviceId) return this.#client.send(request, options);
    const userId = request.userId ?? this.#botUserId;
    await this.ensure(userId, deviceId);
    try {
      return await this.#client.send(request, options);
    } catch (error) {
      if (!(error instanceof MatrixError) || error.errcode !== "M_UNKNOWN_DEVICE") throw error;
      this.#ready.delete(`${userId}\u0000${deviceId}`);
      await this.ensure(userId, deviceId);
      return this.#client.send(request, options);
    }
  }

  /**
   * Makes sure `userId` (the bot or a ghost, registered) has `deviceId`: a look first, so a
   * restart does not pile up access tokens; an appservice login only when it is missing. Does
   * network I/O once per user and device per process; rejects with the homeserver's error.
   */
  ensure(userId: string, deviceId: string): Promise<void> {
    const key = `${userId}\u0000${deviceId}`;
    let ready = this.#ready.get(key);
    if (!ready) {
      ready = this.#provision(userId, deviceId);
      this.#ready.set(key, ready);
      // A failure is not remembered: the next request tries again.
      ready.catch(() => this.#ready.delete(key));
    }
    return ready;
  }

  async #provision(userId: string, deviceId: string): Promise<void> {
    const isBot = userId === this.#botUserId;
    try {
      if (await this.#client.hasDevice(deviceId, isBot ? undefined : { userId: toUserId(userId) })) return;
      await this.#client.ensureDevice(userId.slice(1, userId.indexOf(":")), deviceId);
      this.#log?.info({ userId, deviceId }, "device created");
    } catch (error) {
      const refused =
        error instanceof MatrixError && error.status >= 400 && error.status < 500 && error.status !== 429;
      if (!refused) throw error;
      this.#log?.warn(
        { err: error, userId, deviceId },
        "the homeserver refused to give this user a device; its requests go out naming the device anyway",
      );
    }
  }
}
