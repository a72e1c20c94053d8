// A real Synapse plus everything the framework needs to talk to it: a registration pointing at a
// free port, a config.yaml, and helpers to act as a real user over the Client-Server API.
import { randomBytes } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import yaml from "js-yaml";
import {
  LocalSynapse,
  ensureSynapseInstalled,
  findFreePort,
  type RateLimit,
} from "../../../scripts/synapse/LocalSynapse.ts";
import { FaultProxy } from "../../support/FaultProxy.ts";

export const SERVER_NAME = "localhost";

/** What appservice encryption needs in the registration (docs/encryption.md). */
export const ENCRYPTION_REGISTRATION = { "org.matrix.msc3202": true };
const CLI = fileURLToPath(new URL("../../../src/cli/main.ts", import.meta.url));
const FAULTY = fileURLToPath(new URL("../../support/faultyCourierMain.ts", import.meta.url));

export interface StackOptions {
  /** Synapse rate-limits our ghosts (registration `rate_limited: true`). @default false */
  readonly rateLimited?: boolean;
  readonly rcMessage?: RateLimit;
  /** Extra YAML merged into the courier config (plugins, outbox limits…). */
  readonly config?: Record<string, unknown>;
  /**
   * Put a FaultProxy in each direction (`toSynapse`: the framework's client API calls;
   * `toCourier`: Synapse's pushes), seeded with `seed`. No faults until a test sets them.
   */
  readonly faultProxies?: { readonly seed: number };
  /** Where Synapse pushes transactions instead of the framework's port (a load balancer). */
  readonly appserviceUrl?: string;
  /** Extra keys of the registration file (MSC flags). */
  readonly registration?: Record<string, unknown>;
}

export interface User {
  readonly userId: string;
  readonly accessToken: string;
  readonly deviceId: string;
}

export class E2eStack {
  readonly dir: string;
  readonly synapse: LocalSynapse;
  readonly asToken: string;
  readonly hsToken: string;
  readonly appservicePort: number;
  readonly configPath: string;
  readonly botUserId = `@courier:${SERVER_NAME}`;
  /** Between the framework and Synapse's client API (with `faultProxies`). */
  readonly toSynapse: FaultProxy | undefined;
  /** Between Synapse and the framework's appservice endpoint (with `faultProxies`). */
  readonly toCourier: FaultProxy | undefined;
  readonly #children = new Set<ChildProcess>();
  /** Every framework process this stack started, with its log lines: checked for secrets at stop. */
  readonly #processes: CourierProcess[] = [];
  /** as_token, hs_token, and every secret or token in the courier config (webhook secrets). */
  readonly #secrets: ReadonlyMap<string, string>;

  private constructor(
    dir: string,
    synapse: LocalSynapse,
    tokens: { as: string; hs: string },
    port: number,
    configPath: string,
    config: unknown,
    proxies: { toSynapse?: FaultProxy; toCourier?: FaultProxy },
  ) {
    this.dir = dir;
    this.synapse = synapse;
    this.asToken = tokens.as;
    this.hsToken = tokens.hs;
    this.appservicePort = port;
    this.configPath = configPath;
    this.#secrets = new Map([["as_token", tokens.as], ["hs_token", tokens.hs], ...secretsIn(config)]);
    this.toSynapse = proxies.toSynapse;
    this.toCourier = proxies.toCourier;
  }

  static async start(options: StackOptions = {}): Promise<E2eStack> {
    await ensureSynapseInstalled();
    const dir = mkdtempSync(path.join(tmpdir(), "courier-e2e-"));
    const port = await findFreePort();
    const tokens = {
      as: `as_${randomBytes(24).toString("hex")}`,
      hs: `hs_${randomBytes(24).toString("hex")}`,
    };
    const seed = options.faultProxies?.seed;
    const toCourier =
      seed === undefined
        ? undefined
        : await FaultProxy.start({ upstream: `http://127.0.0.1:${port}`, seed: seed ^ 0x7c0 });
    // Where Synapse pushes transactions: the framework, or the proxy in front of it.
    const appserviceUrl = options.appserviceUrl ?? toCourier?.url ?? `http://127.0.0.1:${port}`;
    const registrationPath = path.join(dir, "registration.yaml");
    writeFileSync(
      registrationPath,
      yaml.dump({
        id: "courier",
        url: appserviceUrl,
        as_token: tokens.as,
        hs_token: tokens.hs,
        sender_localpart: "courier",
        namespaces: {
          users: [{ exclusive: true, regex: `@courier_.*:${SERVER_NAME}` }],
          aliases: [],
          rooms: [],
        },
        rate_limited: options.rateLimited ?? false,
        receive_ephemeral: true,
        "de.sorunome.msc2409.push_ephemeral": true,
        push_ephemeral: true,
        ...options.registration,
      }),
      { mode: 0o600 },
    );
    const synapse = await LocalSynapse.start({
      dataDir: path.join(dir, "synapse"),
      registrationFiles: [registrationPath],
      serverName: SERVER_NAME,
      ...(options.rcMessage ? { rcMessage: options.rcMessage } : {}),
    });
    const toSynapse =
      seed === undefined ? undefined : await FaultProxy.start({ upstream: synapse.baseUrl, seed });
    const configPath = path.join(dir, "config.yaml");
    const config = {
      homeserver: { url: toSynapse?.url ?? synapse.baseUrl, serverName: SERVER_NAME },
      appservice: {
        id: "courier",
        registration: registrationPath,
        bind: { host: "127.0.0.1", port },
        url: appserviceUrl,
        senderLocalpart: "courier",
        namespaces: {
          users: [{ regex: `@courier_.*:${SERVER_NAME}`, exclusive: true }],
          aliases: [],
          rooms: [],
        },
        rateLimited: options.rateLimited ?? false,
      },
      store: { path: path.join(dir, "courier.sqlite") },
      logging: { level: "info" },
      plugins: [{ name: "echo" }, { name: "ping" }],
      ...options.config,
    };
    writeFileSync(configPath, yaml.dump(config), { mode: 0o600 });
    return new E2eStack(dir, synapse, tokens, port, configPath, config, {
      ...(toSynapse ? { toSynapse } : {}),
      ...(toCourier ? { toCourier } : {}),
    });
  }

  /**
   * Runs `courier start` in a child process (so a test can SIGKILL it). Resolves once it listens.
   * With `COURIER_FAULT` in `env`, runs it with that fault hook (test/support/faultyCourierMain.ts).
   */
  async startCourier(env: Record<string, string> = {}): Promise<CourierProcess> {
    const args =
      env.COURIER_FAULT === undefined
        ? [CLI, "start", "--config", this.configPath]
        : [FAULTY, this.configPath];
    const child = spawn(process.execPath, args, {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#children.add(child);
    const proc = new CourierProcess(child);
    this.#processes.push(proc);
    child.on("exit", () => this.#children.delete(child));
    await proc.waitForLog(/"msg":"courier started"/, 30_000);
    return proc;
  }

  /** A real user, registered through Synapse's shared-secret admin API. */
  async user(localpart: string): Promise<User> {
    const user = await this.synapse.registerUser(localpart, `pw-${randomBytes(8).toString("hex")}`, {
      admin: false,
    });
    return { userId: user.userId, accessToken: user.accessToken, deviceId: user.deviceId };
  }

  /** A room `user` creates with the bot invited; resolves once the bot has joined it. */
  async roomWithBot(user: User, createRoom: Record<string, unknown> = {}): Promise<string> {
    const { room_id: roomId } = await this.call<{ room_id: string }>(
      user.accessToken,
      "POST",
      "/_matrix/client/v3/createRoom",
      {
        ...createRoom,
        invite: [this.botUserId],
      },
    );
    await eventually("the bot to join", 20_000, async () => {
      const members = await this.call<{ joined: Record<string, unknown> }>(
        user.accessToken,
        "GET",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/joined_members`,
      );
      return this.botUserId in members.joined ? true : undefined;
    });
    return roomId;
  }

  /** Sends a text message as `user`. */
  async say(user: User, roomId: string, body: string): Promise<void> {
    const txn = `t${Date.now()}${Math.random().toString(36).slice(2)}`;
    await this.call(
      user.accessToken,
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`,
      {
        msgtype: "m.text",
        body,
      },
    );
  }

  /** One Client-Server call as `token`; throws with the answer on a non-2xx status. */
  async call<T = Record<string, unknown>>(
    token: string,
    method: string,
    urlPath: string,
    body?: unknown,
  ): Promise<T> {
    // Like a real client, wait out the homeserver's rate limits (tests may set them low).
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(`${this.synapse.baseUrl}${urlPath}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const json = (await res.json()) as T & { retry_after_ms?: number };
      if (res.status === 429 && attempt < 30) {
        await new Promise((r) => setTimeout(r, Math.max(json.retry_after_ms ?? 500, 100)));
        continue;
      }
      if (!res.ok) throw new Error(`${method} ${urlPath} → ${res.status} ${JSON.stringify(json)}`);
      return json;
    }
  }

  /** Every m.room.message of a room, oldest first, read back with /messages. */
  async messages(
    token: string,
    roomId: string,
  ): Promise<Array<{ sender: string; event_id: string; content: Record<string, unknown> }>> {
    const out: Array<{ sender: string; event_id: string; content: Record<string, unknown>; type: string }> =
      [];
    let from: string | undefined;
    for (let page = 0; page < 200; page++) {
      const query = new URLSearchParams({ dir: "f", limit: "1000", ...(from ? { from } : {}) });
      const res = await this.call<{ chunk: typeof out; end?: string }>(
        token,
        "GET",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?${query}`,
      );
      out.push(...res.chunk);
      if (!res.end || res.chunk.length === 0) break;
      from = res.end;
    }
    return out.filter((e) => e.type === "m.room.message");
  }

  /**
   * Kills what is left, stops Synapse, removes the folder; then fails (throws, so the test file
   * fails from its afterAll) when a log line of any framework process it started contains a
   * token or secret. Every e2e file that stops its stack enforces "no secrets in logs" this way.
   */
  async stop(): Promise<void> {
    for (const child of this.#children) child.kill("SIGKILL");
    await Promise.all(this.#processes.map((p) => p.closed));
    await this.toSynapse?.close();
    await this.toCourier?.close();
    await this.synapse.stop();
    rmSync(this.dir, { recursive: true, force: true });
    const leaks = secretLeaks(this.#processes, this.#secrets);
    if (leaks.length > 0) {
      throw new Error(
        `${leaks.length} framework log line(s) contain a secret:\n${leaks.slice(0, 10).join("\n")}`,
      );
    }
  }
}

/** Values under keys that name a secret or token, anywhere in `value` (the courier config). */
export function secretsIn(value: unknown, key = ""): Array<[string, string]> {
  if (typeof value === "string") return /secret|token/i.test(key) && value.length >= 8 ? [[key, value]] : [];
  if (Array.isArray(value)) return value.flatMap((v, i) => secretsIn(v, `${key}[${i}]`));
  if (value !== null && typeof value === "object") {
    return Object.entries(value).flatMap(([k, v]) => secretsIn(v, key ? `${key}.${k}` : k));
  }
  return [];
}

/** The log lines that contain a secret, with the secret itself replaced by its name. */
export function secretLeaks(
  processes: readonly { readonly lines: readonly string[] }[],
  secrets: ReadonlyMap<string, string>,
): string[] {
  const leaks: string[] = [];
  processes.forEach((proc, p) => {
    for (const line of proc.lines) {
      const found = [...secrets].filter(([, secret]) => line.includes(secret));
      if (found.length === 0) continue;
      let shown = line;
      for (const [name, secret] of found) shown = shown.split(secret).join(`<${name}>`);
      leaks.push(`process ${p + 1}: ${shown.slice(0, 500)}`);
    }
  });
  return leaks;
}

/** A `courier start` child process and its log lines. */
export class CourierProcess {
  readonly child: ChildProcess;
  /** Every line the process wrote, stdout and stderr. */
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  /** Resolves once the process exited and its output is read to the end. */
  readonly closed: Promise<void>;
  #waiters: Array<{ re: RegExp; resolve: (line: string) => void }> = [];

  constructor(child: ChildProcess) {
    this.child = child;
    this.exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
    this.closed = new Promise((resolve) => child.on("close", () => resolve()));
    const onLine = (line: string) => {
      if (!line) return;
      this.lines.push(line);
      this.#waiters = this.#waiters.filter((w) => (w.re.test(line) ? (w.resolve(line), false) : true));
    };
    // Whole lines per stream: a chunk may end mid-line (and a secret split in two would escape the check).
    for (const stream of [child.stdout!, child.stderr!]) {
      let partial = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        const parts = (partial + chunk).split("\n");
        partial = parts.pop()!;
        parts.forEach(onLine);
      });
      stream.on("end", () => onLine(partial));
    }
  }

  waitForLog(re: RegExp, timeoutMs: number): Promise<string> {
    const seen = this.lines.find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `no log line matching ${re} within ${timeoutMs} ms:\n${this.lines.slice(-20).join("\n")}`,
            ),
          ),
        timeoutMs,
      );
      this.#waiters.push({ re, resolve: (line) => (clearTimeout(timer), resolve(line)) });
      this.exited.then((code) =>
        reject(
          new Error(`courier exited with ${code} before logging ${re}:\n${this.lines.slice(-30).join("\n")}`),
        ),
      );
    });
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    this.child.kill(signal);
    await this.exited;
  }
}

/** Polls `check` until it returns a value that is not undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}
