import { Pool } from "undici";
import type { Dispatcher } from "undici";
import type { DeviceId, EventId, RoomId, TxnId, UserId } from "../ids.ts";
import { MatrixError, MatrixNetworkError } from "./MatrixError.ts";
import {
  CLIENT_V3,
  masqueradeQuery,
  redactRequest,
  roomSendRequest,
  seg,
  stateRequest,
  toDeviceRequest,
  type Masquerade,
  type MatrixRequest,
  type ToDeviceMessages,
} from "./requests.ts";

export interface MatrixClientOptions {
  /** Base URL of the homeserver's Client-Server API, e.g. `https://matrix.example.org`; may carry a path prefix. */
  readonly homeserverUrl: string;
  /** The appservice's `as_token`; sent only as `Authorization: Bearer …`, never in a URL. */
  readonly accessToken: string;
  /**
   * Longest wait, in milliseconds, for a connection, for the response headers once the request
   * is on the wire, and between two chunks of the response body. Time spent queued behind other
   * requests for a free connection is not counted. Uses undici's own timers (no per-request
   * `AbortSignal`), which fire up to about a second late. @default 30000
   */
  readonly timeoutMs?: number;
  /** Most sockets kept open to the homeserver (keep-alive). @default 64 */
  readonly connections?: number;
  /**
   * The homeserver's server name (the part after `:` in user ids), used by `registerGhost` to
   * name a user that exists already. @default derived from `whoami()` on first need
   */
  readonly serverName?: string;
}

/** Per-call options of `send`. */
export interface SendOptions {
  /** Overrides the client's `timeoutMs` for this request. */
  readonly timeoutMs?: number | undefined;
  /** Aborts the request; an abort by `AbortSignal.timeout()` reports as `ETIMEDOUT`. */
  readonly signal?: AbortSignal | undefined;
}

export interface WhoAmI {
  readonly user_id: UserId;
  readonly device_id?: DeviceId;
  readonly is_guest?: boolean;
}

export interface Profile {
  readonly displayname?: string;
  readonly avatar_url?: string;
}

export interface Versions {
  readonly versions: string[];
  readonly unstable_features?: Record<string, boolean>;
}

const TIMEOUT_CODES = new Set([
  "ETIMEDOUT",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

/**
 * A small, fast Client-Server API client for an application service: one keep-alive undici
 * `Pool`, the `as_token` in the `Authorization` header, errors as `MatrixError` (the homeserver
 * answered) or `MatrixNetworkError` (it did not). `send` replays a `MatrixRequest` byte for byte;
 * the typed calls are thin wrappers over it.
 */
export class MatrixClient {
  readonly #pool: Pool;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #headers: string[];
  readonly #jsonHeaders: string[];
  #serverName: Promise<string> | undefined;

  constructor(options: MatrixClientOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(
        `Expected options to be an object, got ${options === null ? "null" : typeof options}`,
      );
    }
    const { homeserverUrl, accessToken, timeoutMs = 30_000, connections = 64, serverName } = options;
    let url: URL;
    try {
      url = new URL(homeserverUrl);
    } catch {
      throw new TypeError(
        `Expected homeserverUrl to be an http(s) URL, got ${JSON.stringify(homeserverUrl)}`,
      );
    }
    if ((url.protocol !== "http:" && url.protocol !== "https:") || url.search || url.hash) {
      throw new TypeError(
        `Expected homeserverUrl to be an http(s) URL without query or fragment, got ${JSON.stringify(homeserverUrl)}`,
      );
    }
    if (typeof accessToken !== "string" || accessToken.length === 0 || /[\r\n]/.test(accessToken)) {
      throw new TypeError("Expected accessToken to be a non-empty string on one line");
    }
    if (typeof timeoutMs !== "number" || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new TypeError(`Expected timeoutMs to be a positive number, got ${String(timeoutMs)}`);
    }
    if (typeof connections !== "number" || !Number.isInteger(connections) || connections < 1) {
      throw new TypeError(`Expected connections to be a positive integer, got ${String(connections)}`);
    }
    if (serverName !== undefined && (typeof serverName !== "string" || serverName.length === 0)) {
      throw new TypeError(`Expected serverName to be a non-empty string, got ${JSON.stringify(serverName)}`);
    }
    this.#prefix = url.pathname.replace(/\/+$/, "");
    this.#timeoutMs = timeoutMs;
    this.#serverName = serverName === undefined ? undefined : Promise.resolve(serverName);
    // Built once: undici reads header arrays as flat name/value pairs.
    this.#headers = ["authorization", `Bearer ${accessToken}`];
    this.#jsonHeaders = [...this.#headers, "content-type", "application/json"];
    this.#pool = new Pool(url.origin, { connections, connectTimeout: timeoutMs, pipelining: 1 });
  }

  /**
   * Sends one request exactly as given (method, encoded path with query, body) and parses the
   * JSON answer. Does network I/O. Resolves with the parsed body of a 2xx answer (`{}` when
   * empty); rejects with `MatrixError` for any other status and with `MatrixNetworkError` when no
   * usable answer came (refused, reset, timed out: code `ETIMEDOUT`, aborted: code `ABORT_ERR`).
   */
  async send(req: MatrixRequest, opts?: SendOptions): Promise<unknown> {
    const timeout = opts?.timeoutMs ?? this.#timeoutMs;
    const body = req.body;
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#pool.request({
        method: req.method,
        path: this.#prefix === "" ? req.path : this.#prefix + req.path,
        headers: body === undefined ? this.#headers : this.#jsonHeaders,
        body: body ?? null,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        signal: opts?.signal ?? null,
      });
    } catch (err) {
      throw networkError(req, err, opts?.signal);
    }
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      res.body.destroy();
      throw networkError(req, err, opts?.signal);
    }
    const status = res.statusCode;
    if (status >= 200 && status < 300) {
      if (text === "") return {};
      try {
        return JSON.parse(text) as unknown;
      } catch (err) {
        throw new MatrixNetworkError(
          `${req.method} ${req.path} answered ${status} with a body that is not JSON`,
          "EBADRESPONSE",
          { cause: err },
        );
      }
    }
    let parsed: unknown = text;
    if (text !== "") {
      try {
        parsed = JSON.parse(text);
      } catch {
        // Proxies answer 502/504 with HTML: keep the text, MatrixError names it HTTP_<status>.
      }
    }
    const retryAfter = res.headers["retry-after"];
    throw new MatrixError(status, parsed, Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
  }

  /** Sends a room event (`PUT /rooms/{roomId}/send/{eventType}/{txnId}`). Does network I/O; returns the new `event_id`. */
  async sendEvent(
    roomId: RoomId,
    eventType: string,
    txnId: TxnId,
    content: object,
    as?: Masquerade,
  ): Promise<{ event_id: EventId }> {
    return (await this.send(roomSendRequest({ roomId, eventType, txnId, content, as }))) as {
      event_id: EventId;
    };
  }

  /** Sends to-device messages (`PUT /sendToDevice/{eventType}/{txnId}`). Does network I/O; returns `{}`. */
  async sendToDevice(
    eventType: string,
    txnId: TxnId,
    messages: ToDeviceMessages,
    as?: Masquerade,
  ): Promise<Record<string, never>> {
    return (await this.send(toDeviceRequest({ eventType, txnId, messages, as }))) as Record<string, never>;
  }

  /** Sets room state (`PUT /rooms/{roomId}/state/{eventType}/{stateKey}`). Does network I/O; returns the `event_id`. */
  async sendState(
    roomId: RoomId,
    eventType: string,
    stateKey: string,
    content: object,
    as?: Masquerade,
  ): Promise<{ event_id: EventId }> {
    return (await this.send(stateRequest({ roomId, eventType, stateKey, content, as }))) as {
      event_id: EventId;
    };
  }

  /** Redacts an event (`PUT /rooms/{roomId}/redact/{eventId}/{txnId}`). Does network I/O; returns the redaction's `event_id`. */
  async redact(
    roomId: RoomId,
    eventId: EventId | string,
    txnId: TxnId,
    reason?: string,
    as?: Masquerade,
  ): Promise<{ event_id: EventId }> {
    return (await this.send(redactRequest({ roomId, eventId, txnId, reason, as }))) as { event_id: EventId };
  }

  /**
   * Registers a ghost user in the appservice's namespace (`POST /register`, type
   * `m.login.application_service`, no login). Does network I/O. Returns its user id and whether it
   * was created now (`false` when the homeserver answered `M_USER_IN_USE`). `M_EXCLUSIVE` (outside
   * the namespace) and other errors reject with `MatrixError`.
   */
  async registerGhost(localpart: string): Promise<{ userId: UserId; created: boolean }> {
    const req: MatrixRequest = {
      method: "POST",
      path: `${CLIENT_V3}/register`,
      body: JSON.stringify({ type: "m.login.application_service", username: localpart, inhibit_login: true }),
    };
    try {
      const res = (await this.send(req)) as { user_id?: unknown };
      if (typeof res.user_id === "string") return { userId: res.user_id as UserId, created: true };
      return { userId: `@${localpart}:${await this.#getServerName()}` as UserId, created: true };
    } catch (err) {
      if (!(err instanceof MatrixError) || err.errcode !== "M_USER_IN_USE") throw err;
      return { userId: `@${localpart}:${await this.#getServerName()}` as UserId, created: false };
    }
  }

  /** Creates a room (`POST /createRoom` with the spec's request body). Does network I/O; returns its `room_id`. */
  async createRoom(body: object, as?: Masquerade): Promise<{ room_id: RoomId }> {
    const path = `${CLIENT_V3}/createRoom${masqueradeQuery(as)}`;
    return (await this.send({ method: "POST", path, body: JSON.stringify(body) })) as { room_id: RoomId };
  }

  /** Joins a room by id or alias (`POST /join/{roomIdOrAlias}`). Does network I/O; returns the joined `room_id`. */
  async join(roomIdOrAlias: RoomId | string, as?: Masquerade): Promise<{ room_id: RoomId }> {
    const path = `${CLIENT_V3}/join/${seg(roomIdOrAlias)}${masqueradeQuery(as)}`;
    return (await this.send({ method: "POST", path, body: "{}" })) as { room_id: RoomId };
  }

  /** Invites a user (`POST /rooms/{roomId}/invite`). Does network I/O; resolves when the homeserver accepted it. */
  async invite(roomId: RoomId, userId: UserId, as?: Masquerade): Promise<void> {
    const path = `${CLIENT_V3}/rooms/${seg(roomId)}/invite${masqueradeQuery(as)}`;
    await this.send({ method: "POST", path, body: JSON.stringify({ user_id: userId }) });
  }

  /** Leaves a room (`POST /rooms/{roomId}/leave`). Does network I/O; resolves when the homeserver accepted it. */
  async leave(roomId: RoomId, as?: Masquerade): Promise<void> {
    await this.send({
      method: "POST",
      path: `${CLIENT_V3}/rooms/${seg(roomId)}/leave${masqueradeQuery(as)}`,
      body: "{}",
    });
  }

  /**
   * Reads one state event of a room as the bot (`GET /rooms/{roomId}/state/{type}/{stateKey}`,
   * `format=event`: the whole event, with its sender). Does network I/O; resolves undefined when
   * the room has no such state (404).
   */
  async getStateEvent(
    roomId: string,
    eventType: string,
    stateKey = "",
    as?: Masquerade,
  ): Promise<{ sender?: string; content: Record<string, unknown> } | undefined> {
    const query = masqueradeQuery(as ? { userId: as.userId } : undefined, "format=event");
    try {
      const answer = (await this.send({
        method: "GET",
        path: `${CLIENT_V3}/rooms/${seg(roomId)}/state/${seg(eventType)}/${seg(stateKey)}${query}`,
      })) as Record<string, unknown>;
      // A homeserver that ignores `format` answers with the content alone.
      return typeof answer.content === "object" && answer.content !== null && "type" in answer
        ? (answer as { sender?: string; content: Record<string, unknown> })
        : { content: answer };
    } catch (error) {
      if (error instanceof MatrixError && error.status === 404) return undefined;
      throw error;
    }
  }

  /**
   * The users joined to or invited into a room (`GET /rooms/{roomId}/members`), read as `as` or
   * the bot: the recipients of an encrypted event's room key. Does network I/O.
   */
  async roomMembers(roomId: RoomId, as?: Masquerade): Promise<UserId[]> {
    const query = masqueradeQuery(as ? { userId: as.userId } : undefined, "not_membership=leave");
    const answer = (await this.send({
      method: "GET",
      path: `${CLIENT_V3}/rooms/${seg(roomId)}/members${query}`,
    })) as { chunk?: Array<{ state_key?: string; content?: { membership?: string } }> };
    return (answer.chunk ?? [])
      .filter((m) => m.content?.membership === "join" || m.content?.membership === "invite")
      .map((m) => m.state_key as UserId);
  }

  /** Reads a user's profile (`GET /profile/{userId}`). Does network I/O; returns `displayname` and `avatar_url` when set. */
  async getProfile(userId: UserId): Promise<Profile> {
    return (await this.send({ method: "GET", path: `${CLIENT_V3}/profile/${seg(userId)}` })) as Profile;
  }

  /** Sets a user's display name, masquerading as that user (`PUT /profile/{userId}/displayname`). Does network I/O. */
  async setDisplayName(userId: UserId, name: string): Promise<void> {
    const path = `${CLIENT_V3}/profile/${seg(userId)}/displayname${masqueradeQuery({ userId })}`;
    await this.send({ method: "PUT", path, body: JSON.stringify({ displayname: name }) });
  }

  /** Sets a user's avatar to an `mxc://` URI, masquerading as that user (`PUT /profile/{userId}/avatar_url`). Does network I/O. */
  async setAvatarUrl(userId: UserId, mxc: string): Promise<void> {
    const path = `${CLIENT_V3}/profile/${seg(userId)}/avatar_url${masqueradeQuery({ userId })}`;
    await this.send({ method: "PUT", path, body: JSON.stringify({ avatar_url: mxc }) });
  }

  /** Asks who the token (or the masqueraded user) is (`GET /account/whoami`). Does network I/O; returns `user_id` and more. */
  async whoami(as?: Masquerade): Promise<WhoAmI> {
    return (await this.send({
      method: "GET",
      path: `${CLIENT_V3}/account/whoami${masqueradeQuery(as)}`,
    })) as WhoAmI;
  }

  /** Lists the spec versions the homeserver supports (`GET /_matrix/client/versions`). Does network I/O. */
  async versions(): Promise<Versions> {
    return (await this.send({ method: "GET", path: "/_matrix/client/versions" })) as Versions;
  }

  /**
   * Whether a user of the appservice has this device (`GET /devices/{deviceId}`, masquerading as
   * the user). Does network I/O; false on 404 `M_NOT_FOUND`, rejects on any other error.
   */
  async hasDevice(deviceId: string, as?: Masquerade): Promise<boolean> {
    try {
      await this.send({
        method: "GET",
        path: `${CLIENT_V3}/devices/${seg(deviceId)}${masqueradeQuery(as ? { userId: as.userId } : undefined)}`,
      });
      return true;
    } catch (err) {
      if (err instanceof MatrixError && err.status === 404 && err.errcode === "M_NOT_FOUND") return false;
      throw err;
    }
  }

  /**
   * Gives an appservice user a device: `PUT /devices/{deviceId}?user_id=` as the appservice
   * (MSC4190; Synapse's `DeviceRestServlet.on_PUT` upserts it, 201 or 200, and issues no token),
   * else, on a homeserver without it, an `m.login.application_service` login with that device id
   * (which MSC4190's registrations refuse). To-device messages reach a user only through its
   * devices. Does network I/O; returns the device id.
   */
  async ensureDevice(localpart: string, deviceId: string): Promise<string> {
    const userId = `@${localpart}:${await this.#getServerName()}` as UserId;
    try {
      await this.send({
        method: "PUT",
        path: `${CLIENT_V3}/devices/${seg(deviceId)}${masqueradeQuery({ userId })}`,
        body: JSON.stringify({ display_name: "matrix-courier" }),
      });
      return deviceId;
    } catch (error) {
      const unsupported =
        error instanceof MatrixError &&
        (error.status === 404 || error.status === 405 || error.errcode === "M_UNRECOGNIZED");
      if (!unsupported) throw error;
    }
    const res = (await this.send({
      method: "POST",
      path: `${CLIENT_V3}/login`,
      body: JSON.stringify({
        type: "m.login.application_service",
        identifier: { type: "m.id.user", user: localpart },
        device_id: deviceId,
        initial_device_display_name: "matrix-courier",
      }),
    })) as { device_id?: string };
    return res.device_id ?? deviceId;
  }

  /**
   * Asks the homeserver to ping this appservice back (`POST /_matrix/client/v1/appservice/{id}/ping`),
   * which proves both directions work and makes it retry its backlog. Does network I/O; returns
   * the round trip the homeserver measured, `{duration_ms}`.
   */
  async appservicePing(appserviceId: string, transactionId?: string): Promise<{ duration_ms: number }> {
    const req: MatrixRequest = {
      method: "POST",
      path: `/_matrix/client/v1/appservice/${seg(appserviceId)}/ping`,
      body: JSON.stringify(transactionId === undefined ? {} : { transaction_id: transactionId }),
    };
    return (await this.send(req)) as { duration_ms: number };
  }

  /** Closes the connection pool after the requests in flight have finished. */
  async close(): Promise<void> {
    await this.#pool.close();
  }

  #getServerName(): Promise<string> {
    this.#serverName ??= this.whoami().then(
      ({ user_id }) => user_id.slice(user_id.indexOf(":") + 1),
      (err: unknown) => {
        this.#serverName = undefined;
        throw err;
      },
    );
    return this.#serverName;
  }
}

/** Wraps whatever undici or the socket threw; argument errors are bugs and pass through. */
function networkError(req: MatrixRequest, err: unknown, signal: AbortSignal | undefined): Error {
  // An aborted signal rejects with its reason, which may be any value: name the code after it.
  const code = signal?.aborted && err === signal.reason ? abortCode(err) : errorCode(err);
  if (code === "UND_ERR_INVALID_ARG") return err as Error;
  const message = err instanceof Error && err.message ? err.message : String(err);
  return new MatrixNetworkError(`${req.method} ${req.path} got no answer: ${message}`, code, { cause: err });
}

function abortCode(reason: unknown): string {
  return (reason as { name?: unknown } | null)?.name === "TimeoutError" ? "ETIMEDOUT" : "ABORT_ERR";
}

function errorCode(err: unknown): string {
  if (typeof err !== "object" || err === null) return "EUNKNOWN";
  const e = err as { name?: unknown; code?: unknown; errors?: unknown };
  if (e.name === "TimeoutError") return "ETIMEDOUT";
  if (e.name === "AbortError") return "ABORT_ERR";
  if (typeof e.code === "string") return TIMEOUT_CODES.has(e.code) ? "ETIMEDOUT" : e.code;
  if (Array.isArray(e.errors) && e.errors.length > 0) return errorCode(e.errors[0]);
  return "EUNKNOWN";
}
