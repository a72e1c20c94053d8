// A real Synapse homeserver on loopback, for development (`npm start` without a config,
// scripts/synapse/run.ts) and the e2e tests. It runs the pinned Synapse from the venv that
// install.sh builds under .cache/synapse/venv, with a homeserver.yaml generated here:
// SQLite in the data directory, one client listener on 127.0.0.1, no federation, relaxed rate
// limits, MSC2409 to-device pushes and MSC3202 transaction extensions for appservices enabled.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const SCRIPT_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(SCRIPT_DIR, "..", "..");
/** The venv install.sh creates (overridable with SYNAPSE_VENV, as in install.sh). */
export const SYNAPSE_VENV = process.env.SYNAPSE_VENV
  ? path.resolve(process.env.SYNAPSE_VENV)
  : path.join(REPO_ROOT, ".cache", "synapse", "venv");
const INSTALL_SCRIPT = path.join(SCRIPT_DIR, "install.sh");

/** A rate limit as Synapse's `rc_*` settings spell it. */
export interface RateLimit {
  per_second: number;
  burst_count: number;
}

export interface LocalSynapseOptions {
  /** Directory for homeserver.yaml, the SQLite database, media, signing key and log. */
  dataDir: string;
  /** Appservice registration files (absolute, or relative to the current directory). */
  registrationFiles: string[];
  /** @default "localhost" */
  serverName?: string;
  /** `rc_message`. @default effectively unlimited */
  rcMessage?: RateLimit;
  /** Receives Synapse's stdout/stderr lines (warnings and errors; the full log is in dataDir). */
  log?: (line: string) => void;
  /** Port of the client listener on 127.0.0.1. @default a free port */
  port?: number;
  /** How long to wait for `GET /_matrix/client/versions` to answer. @default 60000 */
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. @default 10000 */
  stopTimeoutMs?: number;
}

export interface RegisteredUser {
  userId: string;
  accessToken: string;
  deviceId: string;
}

/** Far above anything a test does: rate limiting is what the tests choose to exercise. */
const UNLIMITED: RateLimit = { per_second: 100_000, burst_count: 1_000_000 };

const LOG_FILE = "homeserver.log";
const SECRETS_FILE = "courier-secrets.json";

/** Synapse's own stdout/stderr lines kept for error messages. */
const OUTPUT_TAIL_LINES = 40;

interface Secrets {
  registration_shared_secret: string;
  macaroon_secret_key: string;
  form_secret: string;
}

export class LocalSynapse {
  /** e.g. `http://127.0.0.1:45123` (no trailing slash). */
  readonly baseUrl: string;
  readonly serverName: string;
  readonly port: number;
  readonly dataDir: string;
  /** Path of the generated homeserver.yaml. */
  readonly configPath: string;
  /** Path of Synapse's log file (WARNING and above). */
  readonly logPath: string;

  readonly #opts: LocalSynapseOptions;
  readonly #secrets: Secrets;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #outputTail: string[] = [];
  #killOnExit = (): void => {
    this.#child?.kill("SIGKILL");
  };

  private constructor(opts: LocalSynapseOptions, port: number, secrets: Secrets) {
    this.#opts = opts;
    this.#secrets = secrets;
    this.dataDir = path.resolve(opts.dataDir);
    this.serverName = opts.serverName ?? "localhost";
    this.port = port;
    this.baseUrl = `http://127.0.0.1:${port}`;
    this.configPath = path.join(this.dataDir, "homeserver.yaml");
    this.logPath = path.join(this.dataDir, LOG_FILE);
  }

  /**
   * Installs Synapse if needed, writes homeserver.yaml into `dataDir` (keeping the database,
   * signing key and secrets of an earlier run) and starts it; resolves when the client API answers.
   */
  static async start(opts: LocalSynapseOptions): Promise<LocalSynapse> {
    await ensureSynapseInstalled(opts.log);
    const dataDir = path.resolve(opts.dataDir);
    mkdirSync(path.join(dataDir, "media_store"), { recursive: true, mode: 0o700 });
    const secrets = loadOrCreateSecrets(dataDir);
    // A free port found by binding port 0 can be taken by someone else before Synapse binds it:
    // on "address in use", try another one.
    for (let attempt = 1; ; attempt++) {
      const synapse = new LocalSynapse(opts, opts.port ?? (await findFreePort()), secrets);
      try {
        await synapse.#spawnAndWait();
        return synapse;
      } catch (err) {
        const portTaken = /Address already in use|CannotListenError/i.test(String(err));
        if (opts.port !== undefined || !portTaken || attempt >= 3) throw err;
      }
    }
  }

  /** The shared secret for `/_synapse/admin/v1/register`. */
  get registrationSharedSecret(): string {
    return this.#secrets.registration_shared_secret;
  }

  /** Process id of the running Synapse, if any. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Whether the Synapse process is running. */
  get running(): boolean {
    return this.#child !== undefined;
  }

  /** SIGTERM, then SIGKILL if Synapse has not exited within `stopTimeoutMs`. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const exited = this.#exited;
    child.kill("SIGTERM");
    const timeoutMs = this.#opts.stopTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      exited.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.#opts.log?.(`[synapse] did not exit ${timeoutMs} ms after SIGTERM, sending SIGKILL`);
      child.kill("SIGKILL");
      await exited;
    }
  }

  /** SIGKILL: Synapse dies at once, like a crash; what it committed stays in its database. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const exited = this.#exited;
    child.kill("SIGKILL");
    await exited;
  }

  /** Starts a stopped (or killed) Synapse again on the same data directory and port. */
  async resume(): Promise<void> {
    if (this.#child) return;
    await this.#spawnAndWait();
  }

  /**
   * Stops Synapse and starts it again on the same data directory and port: SIGTERM (a clean
   * stop), or SIGKILL (a crash). Either way its in-memory state, such as the transaction-id
   * cache of client sends, is gone.
   */
  async restart(options: { signal?: "SIGTERM" | "SIGKILL" } = {}): Promise<void> {
    if (options.signal === "SIGKILL") await this.kill();
    else await this.stop();
    await this.#spawnAndWait();
  }

  /**
   * Registers a user with the shared-secret admin API (`/_synapse/admin/v1/register`: nonce,
   * then HMAC-SHA1 over nonce, user, password and admin flag).
   */
  async registerUser(
    localpart: string,
    password: string,
    opts: { admin?: boolean } = {},
  ): Promise<RegisteredUser> {
    const url = `${this.baseUrl}/_synapse/admin/v1/register`;
    const nonceRes = await fetch(url);
    const nonceBody = (await nonceRes.json()) as { nonce?: string };
    if (!nonceRes.ok || !nonceBody.nonce) {
      throw new Error(`GET ${url} failed: ${nonceRes.status} ${JSON.stringify(nonceBody)}`);
    }
    const admin = opts.admin ?? false;
    const mac = createHmac("sha1", this.#secrets.registration_shared_secret)
      .update([nonceBody.nonce, localpart, password, admin ? "admin" : "notadmin"].join("\0"), "utf8")
      .digest("hex");
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ nonce: nonceBody.nonce, username: localpart, password, admin, mac }),
    });
    const body = (await res.json()) as {
      user_id?: string;
      access_token?: string;
      device_id?: string;
      errcode?: string;
      error?: string;
    };
    if (!res.ok || !body.user_id || !body.access_token || !body.device_id) {
      throw new Error(
        `registering @${localpart}:${this.serverName} failed: ${res.status} ${body.errcode ?? ""} ${body.error ?? ""}`.trim(),
      );
    }
    return { userId: body.user_id, accessToken: body.access_token, deviceId: body.device_id };
  }

  async #spawnAndWait(): Promise<void> {
    writeFileSync(this.configPath, this.#homeserverYaml(), { mode: 0o600 });
    writeFileSync(path.join(this.dataDir, "log.config.yaml"), this.#logConfigYaml());
    this.#outputTail = [];
    const started = Date.now();
    const python = path.join(SYNAPSE_VENV, "bin", "python");
    const child = spawn(python, ["-m", "synapse.app.homeserver", "-c", this.configPath], {
      cwd: this.dataDir,
      env: { ...process.env, PYTHONUNBUFFERED: "1", PYTHONDONTWRITEBYTECODE: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#child = child;
    let exitInfo: string | undefined;
    this.#exited = new Promise<void>((resolve) => {
      child.once("exit", (code, signal) => {
        exitInfo = signal ? `signal ${signal}` : `exit code ${code}`;
        if (this.#child === child) this.#child = undefined;
        process.removeListener("exit", this.#killOnExit);
        resolve();
      });
      child.once("error", (err) => {
        exitInfo = `spawn error: ${err.message}`;
        if (this.#child === child) this.#child = undefined;
        process.removeListener("exit", this.#killOnExit);
        resolve();
      });
    });
    // Never leave an orphaned Synapse behind when the test runner or CLI exits.
    process.on("exit", this.#killOnExit);
    for (const stream of [child.stdout, child.stderr]) {
      let partial = "";
      stream?.setEncoding("utf8");
      stream?.on("data", (chunk: string) => {
        const lines = (partial + chunk).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) this.#onOutput(line);
      });
      stream?.on("end", () => {
        if (partial) this.#onOutput(partial);
      });
    }

    const timeoutMs = this.#opts.startTimeoutMs ?? 60_000;
    const deadline = started + timeoutMs;
    const versionsUrl = `${this.baseUrl}/_matrix/client/versions`;
    for (;;) {
      if (exitInfo !== undefined) {
        await this.#exited;
        throw new Error(`Synapse exited during start-up (${exitInfo}).\n${await this.#failureContext()}`);
      }
      try {
        const res = await fetch(versionsUrl, { signal: AbortSignal.timeout(2_000) });
        await res.arrayBuffer();
        if (res.ok) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(
          `Synapse did not answer ${versionsUrl} within ${timeoutMs} ms.\n${await this.#failureContext()}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    this.#opts.log?.(`[synapse] ready at ${this.baseUrl} after ${Date.now() - started} ms`);
  }

  #onOutput(line: string): void {
    this.#outputTail.push(line);
    if (this.#outputTail.length > OUTPUT_TAIL_LINES) this.#outputTail.shift();
    this.#opts.log?.(line);
  }

  async #failureContext(): Promise<string> {
    // Synapse's log handlers write the same lines to stderr and the log file; the file adds only
    // what was logged before this process started, so show it when stderr had nothing.
    if (this.#outputTail.length > 0) {
      return `--- Synapse stdout/stderr (last ${OUTPUT_TAIL_LINES} lines; full log: ${this.logPath}) ---\n${this.#outputTail.join("\n")}`;
    }
    let logTail = "(no log file)";
    try {
      logTail = (await readFile(this.logPath, "utf8")).split("\n").slice(-OUTPUT_TAIL_LINES).join("\n");
    } catch {
      // Synapse died before configuring logging
    }
    return `--- ${this.logPath} (last ${OUTPUT_TAIL_LINES} lines) ---\n${logTail}`;
  }

  #homeserverYaml(): string {
    const d = this.dataDir;
    const rc = (limit: RateLimit = UNLIMITED): RateLimit => ({ ...limit });
    const config = {
      server_name: this.serverName,
      public_baseurl: `${this.baseUrl}/`,
      report_stats: false,
      listeners: [
        {
          port: this.port,
          bind_addresses: ["127.0.0.1"],
          type: "http",
          tls: false,
          x_forwarded: false,
          // `client` also serves /_synapse/admin; no `federation` resource.
          resources: [{ names: ["client"], compress: false }],
        },
      ],
      database: { name: "sqlite3", args: { database: path.join(d, "homeserver.db") } },
      log_config: path.join(d, "log.config.yaml"),
      media_store_path: path.join(d, "media_store"),
      // Synapse generates the key on first run (its default --generate-missing-and-run mode).
      signing_key_path: path.join(d, `${this.serverName}.signing.key`),
      registration_shared_secret: this.#secrets.registration_shared_secret,
      macaroon_secret_key: this.#secrets.macaroon_secret_key,
      form_secret: this.#secrets.form_secret,
      enable_registration: false,
      enable_metrics: false,
      url_preview_enabled: false,
      trusted_key_servers: [],
      suppress_key_server_warning: true,
      federation_domain_whitelist: [],
      app_service_config_files: this.#opts.registrationFiles.map((f) => path.resolve(f)),
      // What each flag enables, with the Synapse functions: docs/encryption.md.
      experimental_features: {
        // MSC2409/MSC4203: push to-device messages to appservices that opted in with
        // `receive_ephemeral` / `de.sorunome.msc2409.push_ephemeral` (without it
        // ApplicationServicesHandler.notify_interested_services_ephemeral drops the TO_DEVICE
        // stream). Device masquerading, MSC3202's `?device_id=`, needs no flag
        // (Auth.get_appservice_user); nor does MSC4190's `PUT /devices/{id}` as the appservice
        // (DeviceRestServlet.on_PUT).
        msc2409_to_device_messages_enabled: true,
        // MSC3202 transaction extensions, for appservices whose registration has
        // `org.matrix.msc3202: true`: device list changes (notify_interested_services_ephemeral,
        // DEVICE_LIST stream), one-time key counts and unused fallback key types
        // (_ServiceQueuer._compute_msc3202_otk_counts_and_fallback_keys) in each transaction.
        msc3202_transaction_extensions: true,
      },
      rc_message: rc(this.#opts.rcMessage),
      rc_registration: rc(),
      rc_registration_token_validity: rc(),
      rc_login: { address: rc(), account: rc(), failed_attempts: rc() },
      rc_joins: { local: rc(), remote: rc() },
      rc_joins_per_room: rc(),
      rc_invites: { per_room: rc(), per_user: rc(), per_issuer: rc() },
      rc_third_party_invite: rc(),
      rc_room_creation: rc(),
      rc_key_requests: rc(),
      rc_3pid_validation: rc(),
      rc_admin_redaction: rc(),
      rc_media_create: rc(),
      rc_presence: { per_user: rc() },
      rc_delayed_event_mgmt: rc(),
      rc_reports: rc(),
      rc_user_directory: rc(),
      rc_profile: rc(),
    };
    // JSON is YAML; no YAML library needed and every path is quoted safely.
    return `# Generated by scripts/synapse/LocalSynapse.ts on every start; edits are overwritten.\n${JSON.stringify(config, null, 2)}\n`;
  }

  #logConfigYaml(): string {
    const config = {
      version: 1,
      formatters: {
        precise: {
          format: "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s",
        },
      },
      handlers: {
        file: {
          class: "logging.FileHandler",
          formatter: "precise",
          filename: this.logPath,
          encoding: "utf8",
        },
        console: { class: "logging.StreamHandler", formatter: "precise", stream: "ext://sys.stderr" },
      },
      root: { level: "WARNING", handlers: ["file", "console"] },
      disable_existing_loggers: false,
    };
    return `${JSON.stringify(config, null, 2)}\n`;
  }
}

function loadOrCreateSecrets(dataDir: string): Secrets {
  const file = path.join(dataDir, SECRETS_FILE);
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8")) as Secrets;
  const secret = (): string => randomBytes(32).toString("base64url");
  const secrets: Secrets = {
    registration_shared_secret: secret(),
    macaroon_secret_key: secret(),
    form_secret: secret(),
  };
  writeFileSync(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600, flag: "wx" });
  return secrets;
}

/** A TCP port free on 127.0.0.1 right now (bound to port 0, then released). */
export async function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error("no port assigned"))));
    });
  });
}

/** sha256 of requirements.txt + constraints.txt: the stamp install.sh writes into the venv. */
function wantedStamp(): string {
  const hash = createHash("sha256");
  for (const file of ["requirements.txt", "constraints.txt"]) {
    hash.update(readFileSync(path.join(SCRIPT_DIR, file)));
  }
  return hash.digest("hex");
}

/** Whether the venv holds the pinned Synapse (install.sh's stamp matches). */
export function isSynapseInstalled(): boolean {
  try {
    return (
      existsSync(path.join(SYNAPSE_VENV, "bin", "python")) &&
      readFileSync(path.join(SYNAPSE_VENV, ".courier-install-stamp"), "utf8").trim() === wantedStamp()
    );
  } catch {
    return false;
  }
}

let installing: Promise<void> | undefined;

/**
 * Runs scripts/synapse/install.sh unless the pinned Synapse is already in the venv. Concurrent
 * calls in one process share one run; install.sh itself locks against other processes.
 */
export function ensureSynapseInstalled(log?: (line: string) => void): Promise<void> {
  if (isSynapseInstalled()) return Promise.resolve();
  installing ??= new Promise<void>((resolve, reject) => {
    const child = spawn("bash", [INSTALL_SCRIPT], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const output: string[] = [];
    for (const stream of [child.stdout, child.stderr]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        for (const line of chunk.split("\n")) {
          if (!line) continue;
          output.push(line);
          (log ?? ((l: string) => process.stderr.write(`${l}\n`)))(line);
        }
      });
    }
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${INSTALL_SCRIPT} failed (exit ${code}):\n${output.slice(-30).join("\n")}`));
    });
  }).finally(() => {
    installing = undefined;
  });
  return installing;
}
