import { accessSync, constants, existsSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { dirname } from "node:path";
import { verifyBearer } from "../../http/auth.ts";
import { loadConfig } from "../../config/loadConfig.ts";
import { checkTokens, loadRegistration, type Registration } from "../../config/registration.ts";
import type { CourierConfig } from "../../config/schema.ts";
import { MatrixClient } from "../../matrix/MatrixClient.ts";
import { MatrixError } from "../../matrix/MatrixError.ts";
import { createPool, schemaVersion } from "../../store/postgres/PgDatabase.ts";
import { inspectLeases } from "../../store/postgres/PgLaneLeases.ts";
import { COURIER_DEVICE_ID } from "../../outbox/MatrixTransport.ts";

export type CheckStatus = "pass" | "warn" | "fail" | "skip";

export interface CheckResult {
  readonly name: string;
  readonly status: CheckStatus;
  readonly detail: string;
}

export interface DoctorOptions {
  /** Environment for the config's `COURIER_…` overrides. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Network timeout of each homeserver request. @default 10000 */
  readonly timeoutMs?: number;
  /** Skew above which the clock check warns, and fails. @default { warnMs: 10000, failMs: 300000 } */
  readonly clockSkew?: { readonly warnMs: number; readonly failMs: number };
}

/** The localpart doctor registers to prove ghost registration (inside the user namespace). */
export const DOCTOR_GHOST_SUFFIX = "courier_doctor";

/**
 * Checks a deployment from the outside, in order, each check only when the ones it needs passed:
 * config, registration, homeserver, clock, as_token, ping both ways, ghost registration, store.
 * Never prints a token. Does I/O (files, network, maybe a temporary listener).
 */
export async function runDoctor(configPath: string, options: DoctorOptions = {}): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const add = (name: string, status: CheckStatus, detail: string) => results.push({ name, status, detail });
  const skipRest = (names: string[], why: string) => names.forEach((n) => add(n, "skip", why));
  const LATER = ["homeserver", "clock", "as_token", "ping", "ghost registration", "store"];

  let config: CourierConfig;
  try {
    config = loadConfig(configPath, options.env ?? process.env);
    add("config", "pass", `${configPath} is valid`);
  } catch (error) {
    add("config", "fail", (error as Error).message);
    skipRest(["registration", ...LATER], "needs a valid config");
    return results;
  }
  let registration: Registration;
  try {
    registration = loadRegistration(config.appservice.registration);
    checkTokens(config, registration);
    add("registration", "pass", `${config.appservice.registration} matches the config`);
  } catch (error) {
    add("registration", "fail", (error as Error).message);
    skipRest(LATER.slice(0, -1), "needs a consistent registration");
    await storeCheck(config, add);
    return results;
  }

  const timeoutMs = options.timeoutMs ?? 10_000;
  const client = new MatrixClient({
    homeserverUrl: config.homeserver.url,
    accessToken: registration.asToken,
    timeoutMs,
    serverName: config.homeserver.serverName,
  });
  try {
    let reachable = false;
    try {
      const { versions } = await client.versions();
      reachable = true;
      const latest = [...versions].sort(compareVersions).at(-1) ?? "none";
      const ping = versions.some((v) => compareVersions(v, "v1.7") >= 0);
      add(
        "homeserver",
        ping ? "pass" : "warn",
        `${config.homeserver.url} answers; spec versions up to ${latest}${ping ? "" : " (appservice ping needs v1.7)"}`,
      );
    } catch (error) {
      add("homeserver", "fail", `${config.homeserver.url} cannot be reached: ${(error as Error).message}`);
    }
    if (!reachable) {
      skipRest(["clock", "as_token", "ping", "ghost registration", "encryption"], "needs the homeserver");
    } else {
      add("clock", ...(await clockCheck(config.homeserver.url, timeoutMs, options.clockSkew)));
      const botUserId = `@${registration.senderLocalpart}:${config.homeserver.serverName}`;
      let tokenOk = false;
      try {
        const me = await client.whoami();
        tokenOk = me.user_id === botUserId;
        add(
          "as_token",
          tokenOk ? "pass" : "fail",
          tokenOk
            ? `accepted; the bot user is ${botUserId}`
            : `accepted, but it belongs to ${me.user_id}, not ${botUserId}: is sender_localpart right?`,
        );
      } catch (error) {
        add("as_token", "fail", tokenDiagnosis(error));
      }
      if (!tokenOk) {
        skipRest(["ping", "ghost registration", "encryption"], "needs an accepted as_token");
      } else {
        add("ping", ...(await pingCheck(config, registration, client)));
        add("ghost registration", ...(await ghostCheck(config, registration, client)));
        add("encryption", ...(await encryptionCheck(config, registration, client, botUserId)));
      }
    }
  } finally {
    await client.close();
  }
  await storeCheck(config, add);
  return results;
}

/** 0 when every check passed, warned or was skipped; 1 when one failed. */
export function doctorExitCode(results: readonly CheckResult[]): 0 | 1 {
  return results.some((r) => r.status === "fail") ? 1 : 0;
}

function compareVersions(a: string, b: string): number {
  const parts = (v: string) => (/^v?(\d+)\.(\d+)/.exec(v) ?? [0, 0, 0]).slice(1).map(Number);
  const [x, y] = [parts(a), parts(b)];
  return (x[0] ?? 0) - (y[0] ?? 0) || (x[1] ?? 0) - (y[1] ?? 0);
}

function tokenDiagnosis(error: unknown): string {
  if (
    error instanceof MatrixError &&
    (error.errcode === "M_UNKNOWN_TOKEN" || error.errcode === "M_MISSING_TOKEN")
  )
    return "the homeserver does not know our as_token: is the registration file listed in its app_service_config_files, and was it restarted since?";
  return `whoami failed: ${(error as Error).message}`;
}

async function clockCheck(
  homeserverUrl: string,
  timeoutMs: number,
  limits = { warnMs: 10_000, failMs: 300_000 },
): Promise<[CheckStatus, string]> {
  try {
    const before = Date.now();
    const res = await fetch(new URL("/_matrix/client/versions", homeserverUrl), {
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.arrayBuffer();
    const after = Date.now();
    const header = res.headers.get("date");
    const theirs = header === null ? Number.NaN : Date.parse(header);
    if (Number.isNaN(theirs)) return ["warn", "the homeserver sent no Date header; skew unknown"];
    // The header has 1 s resolution: compare with the middle of the round trip, allow that second.
    const skew = theirs - (before + after) / 2;
    const off = Math.max(0, Math.abs(skew) - 1000);
    const text = `${Math.round(skew / 1000)} s ${skew > 0 ? "behind" : "ahead of"} the homeserver`;
    if (off > limits.failMs) return ["fail", `this clock is ${text}; sync it (NTP)`];
    if (off > limits.warnMs) return ["warn", `this clock is ${text}`];
    return ["pass", `within ${Math.ceil(Math.abs(skew) / 1000)} s of the homeserver's`];
  } catch (error) {
    return ["warn", `could not read the homeserver's Date: ${(error as Error).message}`];
  }
}

/**
 * Ping both ways. When the service runs (its port answers /health), the homeserver pings it.
 * Otherwise doctor listens on the bind address for the duration and answers the ping itself;
 * transactions pushed meanwhile get 503, so the homeserver keeps them and sends them again.
 */
async function pingCheck(
  config: CourierConfig,
  registration: Registration,
  client: MatrixClient,
): Promise<[CheckStatus, string]> {
  const { host, port } = config.appservice.bind;
  let listener: Server | undefined;
  let mode: string;
  try {
    listener = await listenTemporarily(host, port, registration.hsToken);
    mode = `doctor answered on ${host}:${port} (the service is not running)`;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE")
      return ["fail", `cannot listen on ${host}:${port}: ${(error as Error).message}`];
    if (!(await isCourierHealth(host, port)))
      return ["fail", `${host}:${port} is taken by something that is not a running courier`];
    mode = "the running service answered";
  }
  try {
    const { duration_ms } = await client.appservicePing(registration.id, `courier-doctor-${Date.now()}`);
    return ["pass", `both directions work (${duration_ms} ms); ${mode}`];
  } catch (error) {
    const detail =
      error instanceof MatrixError ? `${error.errcode}: ${error.message}` : (error as Error).message;
    return [
      "fail",
      `${detail}; ${mode}. Check the registration url (${registration.url}), the bind address and the hs_token`,
    ];
  } finally {
    if (listener) await new Promise<void>((resolve) => listener.close(() => resolve()));
  }
}

function listenTemporarily(host: string, port: number, hsToken: string): Promise<Server> {
  const authorized = (req: IncomingMessage) => verifyBearer(req.headers.authorization, hsToken) === "ok";
  const server = createServer((req, res) => {
    req.resume();
    const json = (status: number, body: object) => {
      res.writeHead(status, { "content-type": "application/json", connection: "close" });
      res.end(JSON.stringify(body));
    };
    if (!authorized(req)) return json(403, { errcode: "M_FORBIDDEN", error: "Wrong hs_token." });
    if (req.method === "POST" && req.url?.startsWith("/_matrix/app/v1/ping")) return json(200, {});
    json(503, { errcode: "M_UNKNOWN", error: "courier doctor is only checking; send this again later." });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

async function isCourierHealth(host: string, port: number): Promise<boolean> {
  const target = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "[::1]" : host;
  try {
    const res = await fetch(`http://${target}:${port}/health`, { signal: AbortSignal.timeout(5000) });
    return res.ok && ((await res.json()) as { status?: unknown }).status === "ok";
  } catch {
    return false;
  }
}

/** A localpart inside the first exclusive user namespace: its literal prefix + DOCTOR_GHOST_SUFFIX. */
export function ghostLocalpart(regex: string, serverName: string): string | undefined {
  const literal = /^\^?@?((?:[a-z0-9_=\-/]|\\.)*)/.exec(regex)?.[1]?.replace(/\\(.)/g, "$1") ?? "";
  const localpart = `${literal}${DOCTOR_GHOST_SUFFIX}`;
  const userId = `@${localpart}:${serverName}`;
  return new RegExp(`^${regex}$`).test(userId) ? localpart : undefined;
}

async function ghostCheck(
  config: CourierConfig,
  registration: Registration,
  client: MatrixClient,
): Promise<[CheckStatus, string]> {
  const namespace =
    registration.namespaces.users.find((n) => n.exclusive) ?? registration.namespaces.users[0];
  if (!namespace) return ["skip", "skipped: no user namespace"];
  const localpart = ghostLocalpart(namespace.regex, config.homeserver.serverName);
  if (!localpart) return ["skip", `skipped: no test user derived from namespace ${namespace.regex}`];
  try {
    const { userId, created } = await client.registerGhost(localpart);
    return ["pass", `${userId} ${created ? "registered" : "was already registered"}`];
  } catch (error) {
    return ["fail", `could not register @${localpart}: ${(error as Error).message}`];
  }
}

/**
 * With `encryption.enabled`: the registration asks for to-device messages and MSC3202's device
 * lists and key counts, and the bot's device publishes its keys (it has once started). The
 * homeserver's experimental flags cannot be read over the API; docs/encryption.md names them.
 */
async function encryptionCheck(
  config: CourierConfig,
  registration: Registration,
  client: MatrixClient,
  botUserId: string,
): Promise<[CheckStatus, string]> {
  if (!config.encryption.enabled) return ["skip", "skipped: encryption.enabled is false"];
  const missing = [
    !registration.receiveEphemeral && "receive_ephemeral",
    !registration.deviceLists && "org.matrix.msc3202",
  ].filter((m) => m !== false);
  if (missing.length > 0)
    return [
      "fail",
      `the registration lacks ${missing.join(" and ")}: run \`courier register\`, then restart the homeserver`,
    ];
  try {
    const answer = (await client.send({
      method: "POST",
      path: "/_matrix/client/v3/keys/query",
      body: JSON.stringify({ device_keys: { [botUserId]: [COURIER_DEVICE_ID] } }),
    })) as { device_keys?: Record<string, Record<string, { keys?: Record<string, string> }>> };
    const keys = answer.device_keys?.[botUserId]?.[COURIER_DEVICE_ID]?.keys;
    const ed25519 = keys?.[`ed25519:${COURIER_DEVICE_ID}`];
    if (!ed25519)
      return [
        "warn",
        `${botUserId} has no keys on device ${COURIER_DEVICE_ID} yet: they are uploaded at the first start`,
      ];
    return [
      "pass",
      `${botUserId} device ${COURIER_DEVICE_ID} publishes ed25519 ${ed25519}; homeserver flags msc2409_to_device_messages_enabled and msc3202_transaction_extensions are not visible from here (docs/encryption.md)`,
    ];
  } catch (error) {
    return ["fail", `could not query the bot's device keys: ${(error as Error).message}`];
  }
}

async function storeCheck(
  config: CourierConfig,
  add: (name: string, status: CheckStatus, detail: string) => void,
): Promise<void> {
  if (config.store.url !== undefined) return add("store", ...(await postgresCheck(config.store.url)));
  const path = config.store.path;
  if (path === ":memory:") return add("store", "skip", "skipped: in memory");
  try {
    if (!existsSync(path)) {
      // The service creates missing folders: the nearest existing one must be writable.
      let folder = dirname(path);
      while (!existsSync(folder) && dirname(folder) !== folder) folder = dirname(folder);
      accessSync(folder, constants.W_OK);
      return add("store", "pass", `${path} does not exist yet; ${folder} is writable`);
    }
    accessSync(path, constants.R_OK | constants.W_OK);
    const mode = statSync(path).mode & 0o777;
    if (mode & 0o077)
      return add(
        "store",
        "warn",
        `${path} is writable but mode ${mode.toString(8)}; run chmod 600 (it holds messages)`,
      );
    add("store", "pass", `${path} is writable, mode 600`);
  } catch (error) {
    add("store", "fail", `${path}: ${(error as Error).message}`);
  }
}

/** A PostgreSQL store: reachable, its schema not newer than this courier, who shares it. */
async function postgresCheck(url: string): Promise<[CheckStatus, string]> {
  const pool = createPool({ url, poolSize: 1 });
  // The URL may carry a password: name the database by host and name only.
  const { host, pathname } = new URL(url);
  const where = `PostgreSQL ${host}${pathname}`;
  try {
    const { found, known } = await schemaVersion(pool);
    if (found > known)
      return [
        "fail",
        `${where}: schema version ${found} is newer than this courier's (${known}); upgrade courier`,
      ];
    if (found < known) return ["pass", `${where} reachable; schema ${found}, migrated to ${known} at start`];
    const { liveInstances, leases } = await inspectLeases(pool);
    return [
      "pass",
      `${where} reachable; schema ${found}; ${liveInstances} instance(s) seen in the last minute, ${leases} lane lease(s) held`,
    ];
  } catch (error) {
    return ["fail", `${where}: ${(error as Error).message}`];
  } finally {
    await pool.end();
  }
}
