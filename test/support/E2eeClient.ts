// An independent end-to-end-encryption Matrix client for tests: matrix-nio (crypto by vodozemac,
// the Rust olm/megolm) in a Python child process, scripts/e2ee-client/client.py, installed into
// .cache/e2ee-client/venv by scripts/e2ee-client/install.sh (the e2e globalSetup runs it). One
// instance is one logged-in device with a background sync loop; requests are JSON lines on its
// stdin, answers JSON lines on its stdout, correlated by id. Its logs (stderr) are kept for errors.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const SCRIPT_DIR = path.join(REPO_ROOT, "scripts", "e2ee-client");
export const E2EE_CLIENT_VENV = process.env.E2EE_CLIENT_VENV
  ? path.resolve(process.env.E2EE_CLIENT_VENV)
  : path.join(REPO_ROOT, ".cache", "e2ee-client", "venv");
const CLIENT_PY = path.join(SCRIPT_DIR, "client.py");
const STDERR_TAIL_LINES = 40;
/** Default for a request without its own timeoutMs (the client's own waits default to 20 s). */
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export interface E2eeLoginOptions {
  /** e.g. LocalSynapse.baseUrl */
  homeserver: string;
  userId: string;
  password: string;
  /** nio's sqlite store (olm account, sessions, sync token); reuse it to restart the same device. */
  storeDir: string;
  /** Log in to this device id (the server assigns one when omitted). */
  deviceId?: string;
  deviceName?: string;
  /** Join every room this user is invited to, from the sync loop. @default false */
  autoJoin?: boolean;
  /** Extra environment for the child, e.g. E2EE_CLIENT_LOG_LEVEL=DEBUG. */
  env?: Record<string, string>;
  /** Receives the child's stderr lines (nio's warnings). */
  log?: (line: string) => void;
  /** For the login and first sync. @default 30000 */
  timeoutMs?: number;
}

export interface E2eeLogin {
  userId: string;
  deviceId: string;
  accessToken: string;
  /** This device's identity keys. */
  ed25519: string;
  curve25519: string;
}

/** A timeline event as the client saw it. */
export interface E2eeEvent {
  eventId: string;
  sender: string;
  /** The decrypted type (m.room.message) or m.room.encrypted while it cannot be decrypted. */
  type: string;
  body: string | null;
  /** Arrived encrypted and was decrypted (at once or later). */
  decrypted: boolean;
  /** Encrypted and, so far, not decryptable (no room key for its session). */
  undecryptable: boolean;
  /** Was undecryptable when it arrived (decrypted later when `decrypted` is now true). */
  wasUndecryptable: boolean;
  /** When it was decrypted after having been undecryptable (ms since epoch). */
  lateDecryptedAt?: number;
  /** Megolm session of an encrypted event. */
  sessionId?: string;
}

/** How often one room key (m.room_key or m.forwarded_room_key to-device) reached this device. */
export interface RoomKeyStat {
  sender: string;
  senderKey: string;
  roomId: string;
  sessionId: string;
  algorithm: string;
  count: number;
  forwarded: number;
}

export interface OutboundSession {
  sessionId: string;
  /** "user|device" of each device the room key went to. */
  sharedWith: string[];
  members: string[];
  /** The devices nio knew for each member when the session was first used. */
  knownDevices: Record<string, string[]>;
}

export interface DeviceKeys {
  deviceId: string;
  ed25519: string;
  curve25519: string;
  displayName: string;
  deleted: boolean;
}

export interface DeviceKeysResult {
  /** What nio's device store holds for the user (its own device included for itself). */
  devices: DeviceKeys[];
  /** The raw /keys/query answer for the user, by device id (with `query`). */
  server: Record<string, { ed25519: string | null; curve25519: string | null }> | null;
}

export interface WaitForOptions {
  /** @default 1 */
  count?: number;
  sender?: string;
  /** @default ["m.room.message", "m.room.encrypted"] */
  types?: string[];
  /** Count only decrypted events. */
  decrypted?: boolean;
  body?: string;
  /** @default 20000 */
  timeoutMs?: number;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  cmd: string;
}

type Raw = Record<string, unknown>;

function camelEvent(raw: Raw): E2eeEvent {
  const event: E2eeEvent = {
    eventId: raw.event_id as string,
    sender: raw.sender as string,
    type: raw.type as string,
    body: (raw.body as string | null | undefined) ?? null,
    decrypted: raw.decrypted as boolean,
    undecryptable: raw.undecryptable as boolean,
    wasUndecryptable: raw.was_undecryptable as boolean,
  };
  if (typeof raw.late_decrypted_at === "number") event.lateDecryptedAt = raw.late_decrypted_at;
  if (typeof raw.session_id === "string") event.sessionId = raw.session_id;
  return event;
}

/** sha256 of requirements.txt + constraints.txt: the stamp install.sh writes into the venv. */
export function isE2eeClientInstalled(): boolean {
  try {
    const hash = createHash("sha256");
    for (const file of ["requirements.txt", "constraints.txt"])
      hash.update(readFileSync(path.join(SCRIPT_DIR, file)));
    return (
      existsSync(path.join(E2EE_CLIENT_VENV, "bin", "python")) &&
      readFileSync(path.join(E2EE_CLIENT_VENV, ".courier-install-stamp"), "utf8").trim() ===
        hash.digest("hex")
    );
  } catch {
    return false;
  }
}

export class E2eeClient {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #pending = new Map<number, Pending>();
  readonly #stderrTail: string[] = [];
  readonly #exited: Promise<void>;
  #exitInfo: string | undefined;
  #nextId = 1;
  #login: E2eeLogin | undefined;

  private constructor(child: ChildProcessWithoutNullStreams, log: ((line: string) => void) | undefined) {
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once("close", () => resolve()));
    createInterface({ input: child.stdout }).on("line", (line) => this.#onAnswer(line));
    createInterface({ input: child.stderr }).on("line", (line) => {
      this.#stderrTail.push(line);
      if (this.#stderrTail.length > STDERR_TAIL_LINES) this.#stderrTail.shift();
      log?.(line);
    });
    child.once("error", (err) => {
      this.#exitInfo = `spawn error: ${err.message}`;
      this.#failAll();
    });
    child.once("close", (code, signal) => {
      this.#exitInfo ??= signal ? `signal ${signal}` : `exit code ${code}`;
      this.#failAll();
    });
    // A write to a dead child must not crash the test process; the close handler reports it.
    child.stdin.on("error", () => {});
  }

  /** Spawns the client, logs in and waits for its first sync. */
  static async start(opts: E2eeLoginOptions): Promise<E2eeClient> {
    if (!isE2eeClientInstalled()) {
      throw new Error(
        `the E2EE test client is not installed in ${E2EE_CLIENT_VENV}: run bash scripts/e2ee-client/install.sh`,
      );
    }
    const child = spawn(path.join(E2EE_CLIENT_VENV, "bin", "python"), [CLIENT_PY], {
      cwd: REPO_ROOT,
      env: { ...process.env, PYTHONUNBUFFERED: "1", PYTHONDONTWRITEBYTECODE: "1", ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const client = new E2eeClient(child, opts.log);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    try {
      const raw = (await client.#request(
        "login",
        {
          homeserver: opts.homeserver,
          user_id: opts.userId,
          password: opts.password,
          store_dir: path.resolve(opts.storeDir),
          device_id: opts.deviceId ?? null,
          device_name: opts.deviceName ?? "e2ee-test-client",
          auto_join: opts.autoJoin ?? false,
          timeout_ms: timeoutMs,
        },
        timeoutMs + 5_000,
      )) as Raw;
      client.#login = {
        userId: raw.user_id as string,
        deviceId: raw.device_id as string,
        accessToken: raw.access_token as string,
        ed25519: raw.ed25519 as string,
        curve25519: raw.curve25519 as string,
      };
    } catch (err) {
      await client.stop();
      throw err;
    }
    return client;
  }

  get userId(): string {
    return this.#login!.userId;
  }

  get deviceId(): string {
    return this.#login!.deviceId;
  }

  get accessToken(): string {
    return this.#login!.accessToken;
  }

  /** This device's identity keys. */
  get identityKeys(): { ed25519: string; curve25519: string } {
    return { ed25519: this.#login!.ed25519, curve25519: this.#login!.curve25519 };
  }

  #onAnswer(line: string): void {
    let answer: { id?: number; ok?: boolean; result?: unknown; error?: string };
    try {
      answer = JSON.parse(line) as typeof answer;
    } catch {
      this.#stderrTail.push(`(stdout) ${line}`);
      return;
    }
    const pending = answer.id === undefined ? undefined : this.#pending.get(answer.id);
    if (!pending) return;
    this.#pending.delete(answer.id!);
    clearTimeout(pending.timer);
    if (answer.ok) pending.resolve(answer.result);
    else pending.reject(new Error(`e2ee client ${pending.cmd}: ${answer.error ?? "failed"}`));
  }

  #failAll(): void {
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(
        new Error(
          `e2ee client ${pending.cmd}: the client exited (${this.#exitInfo ?? "?"})\n${this.#tail()}`,
        ),
      );
    }
  }

  #tail(): string {
    return `--- e2ee client stderr (last ${STDERR_TAIL_LINES} lines) ---\n${this.#stderrTail.join("\n")}`;
  }

  #request(cmd: string, args: Raw, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<unknown> {
    if (this.#exitInfo !== undefined || this.#child.exitCode !== null) {
      return Promise.reject(
        new Error(`e2ee client ${cmd}: the client has exited (${this.#exitInfo})\n${this.#tail()}`),
      );
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`e2ee client ${cmd}: no answer within ${timeoutMs} ms\n${this.#tail()}`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer, cmd });
      this.#child.stdin.write(`${JSON.stringify({ id, cmd, args })}\n`);
    });
  }

  /** Sends a request with the client-side wait `timeoutMs` and a slightly longer reply timeout. */
  #call(cmd: string, args: Raw, timeoutMs?: number): Promise<unknown> {
    const wait = timeoutMs ?? 20_000;
    return this.#request(cmd, { ...args, timeout_ms: wait }, wait + 5_000);
  }

  /** Creates a room (encrypted: m.room.encryption in the initial state; a DM as Element makes it). */
  async createRoom(
    opts: {
      name?: string;
      encrypted?: boolean;
      invite?: string[];
      isDirect?: boolean;
      timeoutMs?: number;
    } = {},
  ): Promise<string> {
    return (await this.#call(
      "create_room",
      {
        name: opts.name ?? null,
        encrypted: opts.encrypted ?? true,
        invite: opts.invite ?? [],
        is_direct: opts.isDirect ?? false,
      },
      opts.timeoutMs,
    )) as string;
  }

  /** Joins and waits until the room is in this client's sync. */
  async join(roomId: string, timeoutMs?: number): Promise<string> {
    return (await this.#call("join", { room_id: roomId }, timeoutMs)) as string;
  }

  async invite(roomId: string, userId: string): Promise<void> {
    await this.#request("invite", { room_id: roomId, user_id: userId });
  }

  /** Waits until this client's sync shows the user joined (or invited) in the room. */
  async waitMember(
    roomId: string,
    userId: string,
    membership: "join" | "invite" = "join",
    timeoutMs?: number,
  ) {
    await this.#call("wait_member", { room_id: roomId, user_id: userId, membership }, timeoutMs);
  }

  /** Sends an m.text (encrypted in an encrypted room, sharing keys with unverified devices too). */
  async sendText(roomId: string, body: string, timeoutMs?: number): Promise<string> {
    return (await this.#call("send_text", { room_id: roomId, body }, timeoutMs)) as string;
  }

  /**
   * Every timeline event of the room this process has seen, in order (kept in memory: a restarted
   * client resumes from its stored sync token and starts an empty list).
   */
  async messages(roomId: string, types?: string[]): Promise<E2eeEvent[]> {
    const raw = (await this.#request("messages", { room_id: roomId, types: types ?? null })) as Raw[];
    return raw.map(camelEvent);
  }

  /** Waits until `count` matching events are in the room; resolves with all matching events. */
  async waitFor(roomId: string, opts: WaitForOptions = {}): Promise<E2eeEvent[]> {
    const raw = (await this.#call(
      "wait_for",
      {
        room_id: roomId,
        count: opts.count ?? 1,
        sender: opts.sender ?? null,
        types: opts.types ?? null,
        decrypted: opts.decrypted ?? false,
        body: opts.body ?? null,
      },
      opts.timeoutMs,
    )) as Raw[];
    return raw.map(camelEvent);
  }

  /** Per (sender, sender key, room, session): how often its room key reached this device. */
  async roomKeyStats(): Promise<RoomKeyStat[]> {
    const raw = (await this.#request("room_key_stats", {})) as Raw[];
    return raw.map((r) => ({
      sender: r.sender as string,
      senderKey: r.sender_key as string,
      roomId: r.room_id as string,
      sessionId: r.session_id as string,
      algorithm: r.algorithm as string,
      count: r.count as number,
      forwarded: r.forwarded as number,
    }));
  }

  /** The Megolm sessions this client encrypted with in the room, whom each went to (diagnosis). */
  async outboundSessions(roomId: string): Promise<OutboundSession[]> {
    const raw = (await this.#request("outbound_sessions", { room_id: roomId })) as Raw[];
    return raw.map((r) => ({
      sessionId: r.session_id as string,
      sharedWith: r.shared_with as string[],
      members: r.members as string[],
      knownDevices: r.known_devices as Record<string, string[]>,
    }));
  }

  /** The user's devices and identity keys as nio sees them, after a fresh /keys/query (`query`). */
  async deviceKeys(userId: string, opts: { query?: boolean } = {}): Promise<DeviceKeysResult> {
    const raw = (await this.#request("device_keys", { user_id: userId, query: opts.query ?? true })) as {
      devices: Raw[];
      server: DeviceKeysResult["server"];
    };
    return {
      server: raw.server,
      devices: raw.devices.map((d) => ({
        deviceId: d.device_id as string,
        ed25519: d.ed25519 as string,
        curve25519: d.curve25519 as string,
        displayName: d.display_name as string,
        deleted: d.deleted as boolean,
      })),
    };
  }

  /** Writes this device's megolm session keys to a file (Element's key export format). */
  async exportKeys(file: string, passphrase: string): Promise<void> {
    await this.#request("export_keys", { path: path.resolve(file), passphrase }, 60_000);
  }

  /**
   * Imports megolm session keys from an export, then retries the undecryptable events; resolves
   * with how many of them it decrypted (they get `lateDecryptedAt`).
   */
  async importKeys(file: string, passphrase: string): Promise<number> {
    return (await this.#request("import_keys", { path: path.resolve(file), passphrase }, 60_000)) as number;
  }

  /** Stops syncing and exits (the device and its store stay: start again with the same storeDir). */
  async stop(timeoutMs = 10_000): Promise<void> {
    const child = this.#child;
    if (child.exitCode === null && child.signalCode === null) {
      try {
        await this.#request("close", {}, timeoutMs);
      } catch {
        // exited or hung: the kill below
      }
      child.stdin.end();
    }
    let timer: NodeJS.Timeout | undefined;
    const killed = await Promise.race([
      this.#exited.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (killed) {
      child.kill("SIGKILL");
      await this.#exited;
    }
  }
}
