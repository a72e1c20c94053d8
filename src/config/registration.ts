import { existsSync } from "node:fs";
import { AppServiceRegistration } from "matrix-appservice";
import { stringify } from "yaml";
import { z } from "zod";
import { ConfigError, type ConfigProblem } from "../errors.ts";
import { readYamlFile, writeFileAtomic } from "./files.ts";
import { problemsFromIssues } from "./problems.ts";
import { httpUrl, regex, secret, type CourierConfig } from "./schema.ts";

export interface Namespace {
  readonly regex: string;
  readonly exclusive: boolean;
}

export interface Namespaces {
  readonly users: readonly Namespace[];
  readonly aliases: readonly Namespace[];
  readonly rooms: readonly Namespace[];
}

/** What the framework needs from the registration file, camelCased. */
export interface Registration {
  readonly id: string;
  readonly url: string;
  readonly asToken: string;
  readonly hsToken: string;
  readonly senderLocalpart: string;
  readonly namespaces: Namespaces;
  readonly rateLimited: boolean;
  readonly receiveEphemeral: boolean;
  /** MSC3202: device-list changes and one-time-key counts in transactions (encryption needs them). */
  readonly deviceLists?: boolean;
}

/** The registration file's content, as homeservers read it. */
export interface RegistrationFile {
  readonly id: string;
  readonly url: string;
  readonly as_token: string;
  readonly hs_token: string;
  readonly sender_localpart: string;
  readonly namespaces: Namespaces;
  readonly rate_limited: boolean;
  readonly receive_ephemeral: boolean;
  readonly push_ephemeral: boolean;
  readonly "de.sorunome.msc2409.push_ephemeral": boolean;
  readonly "org.matrix.msc3202"?: boolean;
}

export interface WriteResult {
  readonly path: string;
  /** new: there were none; kept: the file's tokens stayed; rotated: the file's tokens were replaced. */
  readonly tokens: "new" | "kept" | "rotated";
}

const REGISTER = "run `courier register --force` to write fresh tokens, then restart the homeserver";

/** Why a token cannot be used, or undefined. Never quotes the token (it would end up in logs). */
export function tokenProblem(token: string): string | undefined {
  if (token.length === 0) return "is empty";
  if (/change_?me|placeholder|xxx/i.test(token)) return "is a placeholder";
  if (token.length < 16) return `is too short (${token.length} characters; at least 16)`;
  return undefined;
}

const token = secret.superRefine((value, ctx) => {
  const problem = tokenProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: `${problem}; ${REGISTER}` });
});

// Loose objects: homeservers allow keys of their own (protocols, MSCs); we read only ours.
const namespaceList = z.array(z.object({ regex, exclusive: z.boolean() })).default([]);
const registrationSchema = z.object({
  id: z.string().min(1),
  url: httpUrl("http://127.0.0.1:9000"),
  as_token: token,
  hs_token: token,
  sender_localpart: z.string().min(1),
  namespaces: z.object({ users: namespaceList, aliases: namespaceList, rooms: namespaceList }).prefault({}),
  // Synapse's default when the key is absent.
  rate_limited: z.boolean().default(true),
  receive_ephemeral: z.boolean().optional(),
  push_ephemeral: z.boolean().optional(),
  "de.sorunome.msc2409.push_ephemeral": z.boolean().optional(),
  "org.matrix.msc3202": z.boolean().optional(),
});

const onlyRegexAndExclusive = (list: readonly Namespace[]): Namespace[] =>
  list.map(({ regex, exclusive }) => ({ regex, exclusive }));

/**
 * The registration for `config`, through matrix-appservice's AppServiceRegistration (the same
 * validation and token generator as the rest of the ecosystem), plus the ephemeral keys it does
 * not know. Tokens: `existing` if given, else the config's pinned ones, else fresh random ones.
 */
export function buildRegistration(
  config: CourierConfig,
  existing?: { readonly asToken: string; readonly hsToken: string },
): RegistrationFile {
  const { appservice } = config;
  const registration = new AppServiceRegistration(appservice.url);
  registration.setId(appservice.id);
  registration.setSenderLocalpart(appservice.senderLocalpart);
  registration.setAppServiceToken(
    existing?.asToken ?? appservice.asToken ?? AppServiceRegistration.generateToken(),
  );
  registration.setHomeserverToken(
    existing?.hsToken ?? appservice.hsToken ?? AppServiceRegistration.generateToken(),
  );
  registration.setRateLimited(appservice.rateLimited);
  registration.pushEphemeral = appservice.receiveEphemeral;
  for (const kind of ["users", "aliases", "rooms"] as const) {
    for (const { regex, exclusive } of appservice.namespaces[kind])
      registration.addRegexPattern(kind, regex, exclusive);
  }
  const output = registration.getOutput();
  return {
    id: output.id,
    url: appservice.url,
    as_token: output.as_token,
    hs_token: output.hs_token,
    sender_localpart: output.sender_localpart,
    // Always all three lists: some homeservers (Conduit) want them present even when empty.
    namespaces: {
      users: onlyRegexAndExclusive(appservice.namespaces.users),
      aliases: onlyRegexAndExclusive(appservice.namespaces.aliases),
      rooms: onlyRegexAndExclusive(appservice.namespaces.rooms),
    },
    rate_limited: appservice.rateLimited,
    // Stable spelling (Matrix 1.13+), the unstable one Synapse reads, and the one some bridges use.
    receive_ephemeral: appservice.receiveEphemeral,
    push_ephemeral: appservice.receiveEphemeral,
    "de.sorunome.msc2409.push_ephemeral": appservice.receiveEphemeral,
    // Encryption: device-list changes and key counts in transactions (Synapse also needs its
    // `msc3202_transaction_extensions` flag; docs/encryption.md).
    ...(config.encryption.enabled ? { "org.matrix.msc3202": true } : {}),
  };
}

const HEADER = [
  "# Appservice registration for matrix-courier, written by `courier register`.",
  "# Give it to the homeserver (Synapse: app_service_config_files) and restart the homeserver.",
  "# It holds the as_token and hs_token: keep it private (mode 0600). `courier register` keeps the",
  "# tokens when it rewrites this file; `courier register --force` replaces them.",
  "",
].join("\n");

/**
 * Writes (or rewrites) the registration file: atomically, mode 0600. An existing file's tokens
 * are kept (only id, url, namespaces and flags change) unless `force` rotates them; tokens pinned
 * in the config always win. An existing file with unusable tokens is refused without `force`,
 * so no token is ever replaced silently.
 */
export function writeRegistration(
  path: string,
  config: CourierConfig,
  options: { force?: boolean } = {},
): WriteResult {
  const existing = existsSync(path) ? readExistingTokens(path, options.force ?? false) : undefined;
  const kept = options.force || existing === "unreadable" ? undefined : existing;
  const file = buildRegistration(config, kept);
  const problems = tokenProblems(path, file.as_token, file.hs_token);
  if (problems.length > 0) throw new ConfigError(problems);
  writeFileAtomic(path, HEADER + stringify(file), 0o600);
  if (existing === undefined) return { path, tokens: "new" };
  const same =
    existing !== "unreadable" && existing.asToken === file.as_token && existing.hsToken === file.hs_token;
  return { path, tokens: same ? "kept" : "rotated" };
}

/**
 * The tokens of a registration about to be rewritten; undefined when it has none. A file whose
 * tokens cannot be used is refused, or with `force` "unreadable" (it is replaced whole).
 */
function readExistingTokens(
  path: string,
  force: boolean,
): { asToken: string; hsToken: string } | "unreadable" | undefined {
  const hint: ConfigProblem = {
    file: path,
    message: `${path} exists but its tokens cannot be kept; fix it, or run \`courier register --force\` to replace it`,
  };
  let data: unknown;
  try {
    data = readYamlFile(path, `registration file not found: ${path}`).data;
  } catch (error) {
    if (force) return "unreadable";
    if (error instanceof ConfigError) throw new ConfigError([...error.problems, hint]);
    throw error;
  }
  const { as_token: asToken, hs_token: hsToken } = (data ?? {}) as { as_token?: unknown; hs_token?: unknown };
  if (asToken === undefined && hsToken === undefined) return undefined;
  if (typeof asToken === "string" && typeof hsToken === "string") {
    const problems = tokenProblems(path, asToken, hsToken);
    if (problems.length === 0 || force) return { asToken, hsToken };
    throw new ConfigError([...problems, hint]);
  }
  if (force) return "unreadable";
  throw new ConfigError([
    { file: path, key: "as_token", message: "as_token and hs_token must both be strings" },
    hint,
  ]);
}

function tokenProblems(file: string, asToken: string, hsToken: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const asProblem = tokenProblem(asToken);
  const hsProblem = tokenProblem(hsToken);
  if (asProblem) problems.push({ file, key: "as_token", message: `${asProblem}; ${REGISTER}` });
  if (hsProblem) problems.push({ file, key: "hs_token", message: `${hsProblem}; ${REGISTER}` });
  if (asToken === hsToken && !asProblem) {
    // Each direction needs its own secret: with one token, whoever can call us can act as us.
    problems.push({ file, key: "hs_token", message: `is the same as as_token; ${REGISTER}` });
  }
  return problems;
}

/** Reads and checks the registration file: a ConfigError lists every problem with its line. */
export function loadRegistration(path: string): Registration {
  const yaml = readYamlFile(
    path,
    `registration file not found: ${path} (run \`courier register\` to write one)`,
  );
  const parsed = registrationSchema.safeParse(yaml.data);
  if (!parsed.success) {
    throw new ConfigError(
      problemsFromIssues(parsed.error.issues, { yaml, schema: registrationSchema, data: yaml.data }),
    );
  }
  const r = parsed.data;
  return {
    id: r.id,
    url: r.url,
    asToken: r.as_token,
    hsToken: r.hs_token,
    senderLocalpart: r.sender_localpart,
    namespaces: {
      users: onlyRegexAndExclusive(r.namespaces.users),
      aliases: onlyRegexAndExclusive(r.namespaces.aliases),
      rooms: onlyRegexAndExclusive(r.namespaces.rooms),
    },
    rateLimited: r.rate_limited,
    receiveEphemeral:
      r.receive_ephemeral ?? r["de.sorunome.msc2409.push_ephemeral"] ?? r.push_ephemeral ?? false,
    deviceLists: r["org.matrix.msc3202"] ?? false,
  };
}

/**
 * Refuses to start on a config and registration that disagree: tokens pinned in the config that
 * differ, one token for both directions, another id or bot user; and an admin or metrics token
 * that is the hs_token or the as_token (reported at `configFile`). Messages never quote a token.
 */
export function checkTokens(config: CourierConfig, registration: Registration, configFile = "config"): void {
  const file = config.appservice.registration;
  const { asToken, hsToken, id, senderLocalpart } = config.appservice;
  const problems: ConfigProblem[] = [];
  const differs = (key: string, setting: string, variable: string) =>
    problems.push({
      file,
      key,
      message: `differs from ${setting} in the config (or ${variable}); remove it there, or set the registration's value`,
    });
  if (asToken !== undefined && asToken !== registration.asToken) {
    differs("as_token", "appservice.asToken", "COURIER_APPSERVICE_AS_TOKEN");
  }
  if (hsToken !== undefined && hsToken !== registration.hsToken) {
    differs("hs_token", "appservice.hsToken", "COURIER_APPSERVICE_HS_TOKEN");
  }
  if (registration.asToken === registration.hsToken) {
    problems.push({ file, key: "hs_token", message: `is the same as as_token; ${REGISTER}` });
  }
  // A token of the operator surfaces that is also an appservice token would let whoever holds
  // it (a dashboard user, a scraper) pose as the homeserver or act as the appservice.
  const surfaces = [
    ["admin.token", config.admin.token, "COURIER_ADMIN_TOKEN"],
    ["metrics.token", config.metrics.token, "COURIER_METRICS_TOKEN"],
  ] as const;
  for (const [key, value, variable] of surfaces) {
    if (value === undefined) continue;
    const same =
      value === registration.hsToken ? "hs_token" : value === registration.asToken ? "as_token" : undefined;
    if (same === undefined) continue;
    problems.push({
      file: configFile,
      key,
      message: `is the registration's ${same} (set here or by ${variable}); give it a token of its own`,
    });
  }
  const rewrite = "run `courier register` to rewrite the registration, then restart the homeserver";
  if (registration.id !== id) {
    problems.push({
      file,
      key: "id",
      message: `is "${registration.id}" but appservice.id is "${id}"; ${rewrite}`,
    });
  }
  if (registration.senderLocalpart !== senderLocalpart) {
    problems.push({
      file,
      key: "sender_localpart",
      message: `is "${registration.senderLocalpart}" but appservice.senderLocalpart is "${senderLocalpart}"; ${rewrite}`,
    });
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
