import { isIP } from "node:net";
import { z } from "zod";
import { describe } from "./problems.ts";
import { DISPATCHER_DEFAULTS } from "../inbound/Dispatcher.ts";
import { OUTBOX_DEFAULTS } from "../outbox/options.ts";
import { HANDLER_DEFAULTS } from "../plugins/PluginHost.ts";

// Every object is strict: a misspelt key is an error, not a setting silently ignored. Sections
// whose keys all have defaults use `prefault({})`, which (unlike zod 4's `default`) runs the
// inner defaults too. Custom checks word their message "expected ..., got <value>" like the
// built-in ones (problems.ts), so every line of a ConfigError reads the same way.

/** `schema` plus a check that fails with "expected <what>, got <value>". */
function expecting<T extends z.ZodType>(schema: T, what: string, test: (value: z.output<T>) => boolean): T {
  return schema.superRefine((value, ctx) => {
    if (!test(value)) ctx.addIssue({ code: "custom", message: `expected ${what}, got ${describe(value)}` });
  });
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    // The Matrix client appends API paths to it: a query or fragment would end up mid-path.
    return (url.protocol === "http:" || url.protocol === "https:") && !url.search && !url.hash;
  } catch {
    return false;
  }
}

export const httpUrl = (example: string) =>
  expecting(z.string(), `an http(s) URL such as ${example} (no query or fragment)`, isHttpUrl);

/**
 * A token. Its own type check, because zod's would quote the value in the error message and
 * tokens never appear in messages or logs (DESIGN.md, invariant 10).
 */
export const secret = z.custom<string>((v) => typeof v === "string", {
  error: (issue) =>
    issue.input === undefined
      ? "missing (expected a string)"
      : "expected a string (quote it if it looks like a number)",
});

const positiveInt = (fallback: number) => z.number().int().min(1).default(fallback);

/** A regular expression that compiles (JavaScript syntax; Synapse's Python `re` reads the same). */
export const regex = z.string().superRefine((value, ctx) => {
  try {
    new RegExp(value);
  } catch (error) {
    const reason = (error as Error).message.split(": ").at(-1);
    ctx.addIssue({
      code: "custom",
      message: `expected a valid regular expression, got ${describe(value)} (${reason})`,
    });
  }
});

const namespace = z.array(
  z
    .object({
      regex,
      /** Whether only this appservice may use the matched ids; Synapse needs it spelt out. */
      exclusive: z.boolean(),
    })
    .strict(),
);

const rate = z
  .object({
    /** Sustained requests per second. @default 50 */
    perSecond: z.number().positive().default(OUTBOX_DEFAULTS.rate.perSecond),
    /** Requests that may leave at once after a quiet period. @default 100 */
    burst: z.number().min(1).default(OUTBOX_DEFAULTS.rate.burst),
  })
  .strict();

const userIdKey = expecting(z.string(), 'a user id such as "@bot:example.org"', (v) => /^@[^:]+:.+$/.test(v));

const homeserver = z
  .object({
    /** Client-Server API base URL, e.g. "https://matrix.example.org". Required. */
    url: httpUrl("http://127.0.0.1:8008"),
    /** The part after ":" in user ids, e.g. "example.org". Required. */
    serverName: expecting(z.string(), 'a server name such as "example.org" (no scheme, no path)', (v) =>
      /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(v),
    ),
  })
  .strict();

/** What express's `trust proxy` accepts: an address, a CIDR range, or one of its named ranges. */
function isProxyAddress(value: string): boolean {
  if (["loopback", "linklocal", "uniquelocal"].includes(value)) return true;
  const [address = "", prefix, ...rest] = value.split("/");
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
}

const appservice = z
  .object({
    /** The registration's `id`; must never change once the homeserver knows it. @default "courier" */
    id: z.string().min(1).default("courier"),
    /** The registration file, relative to the config file's folder. @default "./registration.yaml" */
    registration: z.string().min(1).default("./registration.yaml"),
    /** Where the appservice endpoint listens. @default { host: "127.0.0.1", port: 9000 } */
    bind: z
      .object({
        host: z.string().min(1).default("127.0.0.1"),
        /** 0 picks a free port (tests). */
        port: z.number().int().min(0).max(65535).default(9000),
      })
      .strict()
      .prefault({}),
    /** How the homeserver reaches us; goes into the registration. @default "http://<bind.host>:<bind.port>" */
    url: httpUrl("http://127.0.0.1:9000").optional(),
    /** The bot user's localpart. @default "courier" */
    senderLocalpart: expecting(z.string(), "a user id localpart (a-z, 0-9, . _ = - / +)", (v) =>
      /^[a-z0-9._=\-/+]+$/.test(v),
    ).default("courier"),
    /** Ids the appservice owns. @default { users: [], aliases: [], rooms: [] } */
    namespaces: z
      .object({ users: namespace.default([]), aliases: namespace.default([]), rooms: namespace.default([]) })
      .strict()
      .prefault({}),
    /** Whether the homeserver rate-limits our ghosts; false exempts them. @default false */
    rateLimited: z.boolean().default(false),
    /** Ask for ephemeral events (typing, receipts, presence) and to-device messages. @default true */
    receiveEphemeral: z.boolean().default(true),
    /** Largest transaction body accepted. @default 33554432 (32 MiB: Synapse's 100 events x 64 KiB, plus ephemeral) */
    maxBodyBytes: positiveInt(32 * 1024 * 1024),
    /** If set, must equal the registration's as_token (a cross-check, e.g. from a secret store). */
    asToken: secret.optional(),
    /** If set, must equal the registration's hs_token. */
    hsToken: secret.optional(),
    /** Accept the deprecated `?access_token=` from the homeserver (old Synapse, Conduit). @default false */
    allowQueryToken: z.boolean().default(false),
    /**
     * Reverse proxies in front of the listener whose X-Forwarded-For/-Host/-Proto are believed
     * (client address for throttling, the dashboard's origin check, Secure cookies): addresses,
     * CIDR ranges, or loopback, linklocal, uniquelocal. @default [] (those headers are ignored)
     */
    trustedProxies: z
      .array(
        expecting(
          z.string(),
          "an IP address, a CIDR range (10.0.0.0/8), or loopback, linklocal, uniquelocal",
          isProxyAddress,
        ),
      )
      .default([]),
  })
  .strict()
  .transform((section) => ({
    ...section,
    // 0.0.0.0 / :: listen everywhere, but the homeserver needs an address it can connect to.
    url:
      section.url ??
      `http://${/^(0\.0\.0\.0|::)$/.test(section.bind.host) ? "127.0.0.1" : section.bind.host}:${section.bind.port}`,
  }))
  .prefault({});

const store = z
  .object({
    /**
     * A PostgreSQL database, `postgres://user:password@host:port/database`, for several instances
     * sharing the work; unset: the SQLite file of \`path\`. Keep the password in COURIER_STORE_URL
     * rather than in the file. @default unset
     */
    url: expecting(z.string(), "a postgres:// or postgresql:// URL", (v) =>
      /^postgres(ql)?:\/\/./.test(v),
    ).optional(),
    /**
     * With `url`: how long an instance's hold on a room (its lease) lasts without renewal, which is
     * how long another instance waits to take over the rooms of one that died. @default 5
     */
    leaseSeconds: z.number().positive().max(3600).default(5),
    /** SQLite file, relative to the config file's folder. @default "./data/courier.sqlite" */
    path: z.string().min(1).default("./data/courier.sqlite"),
    /** NORMAL (WAL) survives a process crash; FULL also a power cut, at a lower commit rate. @default "NORMAL" */
    synchronous: z.enum(["NORMAL", "FULL"]).default("NORMAL"),
    /**
     * Days a sent or dead-lettered request, and a handled inbound transaction, are kept. Keep it
     * longer than any replay you may need to collapse onto them (a restored backup, a homeserver
     * resending an old transaction). @default 7
     */
    retentionDays: z.number().positive().default(7),
  })
  .strict()
  .prefault({});

const encryption = z
  .object({
    /** End-to-end encryption: decrypt what encrypted rooms send, encrypt what is sent there. @default false */
    enabled: z.boolean().default(false),
    /** Ghosts get devices and keys too (bridges); otherwise only the bot, and ghosts send in clear. @default false */
    ghosts: z.boolean().default(false),
    /**
     * The key the crypto store is encrypted with: 32 bytes, base64. Set it from the environment
     * (COURIER_ENCRYPTION_STORE_KEY), never in the file; unset: read from `storeKeyFile`.
     */
    storeKey: secret.optional(),
    /** File holding the store key; made (0600, random) on first start. Back it up with the store. @default "./data/crypto.key" */
    storeKeyFile: z.string().min(1).default("./data/crypto.key"),
    /** The crypto store (devices' keys and sessions), SQLite. @default "./data/crypto.sqlite" */
    path: z.string().min(1).default("./data/crypto.sqlite"),
    /** How long an encrypted event whose key has not come holds its room before it waits aside. @default 5000 */
    keyWaitMs: z.number().int().min(0).max(60_000).default(5000),
  })
  .strict()
  .prefault({});

const outbox = z
  .object({
    /** Lanes (rooms) sending at the same time. @default 32 */
    maxConcurrency: positiveInt(OUTBOX_DEFAULTS.maxConcurrency),
    /** Per-sender token bucket. @default { perSecond: 50, burst: 100 } */
    rate: rate.prefault({}),
    /** Per-sender overrides of `rate`, keyed by user id; unset fields fall back to `rate`. */
    rateBySender: z.record(userIdKey, rate.partial()).optional(),
    /** Backoff of transient failures. @default { baseMs: 250, capMs: 60000 } */
    retry: z
      .object({
        baseMs: positiveInt(OUTBOX_DEFAULTS.retry.baseMs),
        capMs: positiveInt(OUTBOX_DEFAULTS.retry.capMs),
      })
      .strict()
      .prefault({}),
    /** Timeout of one request. @default 30000 */
    requestTimeoutMs: positiveInt(OUTBOX_DEFAULTS.requestTimeoutMs),
    /**
     * Send as a device: the bot and every ghost get a device "COURIER" (created on first use)
     * and every request names it (`device_id`), so Synapse (>= 1.141) dedupes room sends in its
     * database for 24 h, across its restarts, not only in memory (test/e2e/synapseRestart.test.ts:
     * off, a Synapse crash duplicates the messages it processed but could not confirm). Turn it
     * off only for a homeserver that cannot give appservice users devices. @default true
     */
    ghostDevices: z.boolean().default(true),
  })
  .strict()
  .prefault({});

const dispatcher = z
  .object({
    /** Inbound events handled at the same time (events of one room stay in order). @default 16 */
    maxConcurrency: positiveInt(DISPATCHER_DEFAULTS.maxConcurrency),
    /** A handler running longer is abandoned and counted as failed. @default 30000 */
    handlerTimeoutMs: positiveInt(HANDLER_DEFAULTS.handlerTimeoutMs),
    /**
     * Tries of one handler on one event before it is given up: the event is dead-lettered for
     * that handler, the others' work stands. @default 5
     */
    maxAttempts: positiveInt(HANDLER_DEFAULTS.maxAttempts),
  })
  .strict()
  .prefault({});

const logging = z
  .object({
    /** pino level. @default "info" */
    level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    /** Human-readable lines; "auto" = when stdout is a terminal. @default "auto" */
    pretty: z
      .custom<"auto" | boolean>((v) => v === "auto" || typeof v === "boolean", {
        error: (issue) => `expected "auto", true or false, got ${describe(issue.input)}`,
      })
      .default("auto"),
  })
  .strict()
  .prefault({});

/** The operator dashboard's token: long enough not to be guessed; never quoted in a message. */
const adminToken = secret.superRefine((value, ctx) => {
  if (typeof value !== "string") return;
  if (/change_?me|placeholder|xxx/i.test(value))
    ctx.addIssue({ code: "custom", message: "is a placeholder" });
  else if (value.length < 16)
    ctx.addIssue({ code: "custom", message: `is too short (${value.length} characters; at least 16)` });
});

const admin = z
  .object({
    /**
     * The operator dashboard under /admin/ on the appservice listener, for anyone who presents
     * this token (`Authorization: Bearer`, or the login form). Unset: no dashboard. @default unset
     */
    token: adminToken.optional(),
    /** How long a browser login lasts. @default 720 (12 hours) */
    sessionMinutes: positiveInt(720),
  })
  .strict()
  .prefault({});

const metrics = z
  .object({
    /** Prometheus metrics on GET /metrics of the appservice listener. @default true */
    enabled: z.boolean().default(true),
    /** When set, a scrape must send `Authorization: Bearer <token>`. @default unset: open, like most exporters */
    token: secret.optional(),
  })
  .strict()
  .prefault({});

const plugin = z
  .object({
    /** Unique; names the plugin's config section, logs, store keys and HTTP prefix. */
    name: expecting(
      z.string(),
      "a name of lowercase letters, digits and dashes, starting with a letter",
      (v) => /^[a-z][a-z0-9-]*$/.test(v),
    ),
    /** Path (./ or ../: relative to the config file's folder) or package name. @default the shipped plugin `name` */
    module: z.string().min(1).optional(),
    /** @default true */
    enabled: z.boolean().default(true),
    /** Checked later by the plugin's own schema. @default {} */
    config: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();

/** Plugins in load order. @default [] */
const plugins = z
  .array(plugin)
  .default([])
  .superRefine(
    (list: unknown[], ctx) => {
      const first = new Map<string, number>();
      list.forEach((entry, index) => {
        const name = (entry as { name?: unknown } | null)?.name;
        if (typeof name !== "string") return;
        const earlier = first.get(name);
        if (earlier === undefined) first.set(name, index);
        else {
          ctx.addIssue({
            code: "custom",
            path: [index, "name"],
            message: `duplicate plugin name "${name}" (also plugins[${earlier}]); names must be unique`,
          });
        }
      });
    },
    // Also when some entry is invalid: every problem is reported at once, not one per run.
    { when: (payload) => Array.isArray(payload.value) },
  );

export const configSchema = z
  .object({ homeserver, appservice, store, encryption, outbox, dispatcher, logging, admin, metrics, plugins })
  .strict();

/** The configuration after validation, with every default applied and paths absolute. */
export type CourierConfig = z.infer<typeof configSchema>;
export type PluginEntry = CourierConfig["plugins"][number];
