import { existsSync } from "node:fs";
import { ConfigError } from "../errors.ts";
import { writeFileAtomic } from "./files.ts";

export interface StarterOptions {
  /** @default "http://127.0.0.1:8008" (the local Synapse of `npm run synapse`) */
  readonly homeserverUrl?: string;
  /** @default "localhost" */
  readonly serverName?: string;
}

const escapeRegex = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * A commented config.yaml that loadConfig accepts as is: the settings a new user edits, and the
 * others commented out at their defaults. config.example.yaml is `starterConfig()` (a unit
 * test keeps the two equal), so the text stays as prettier formats it (`npm run lint` checks it).
 */
export function starterConfig(options: StarterOptions = {}): string {
  const url = options.homeserverUrl ?? "http://127.0.0.1:8008";
  const serverName = options.serverName ?? "localhost";
  return `# matrix-courier configuration. Every key is checked: a misspelt key is an error.
# Any single value can be overridden from the environment: COURIER_ + the key path in
# SCREAMING_SNAKE_CASE, e.g. COURIER_HOMESERVER_URL, COURIER_OUTBOX_RATE_PER_SECOND.
# Relative paths are relative to this file's folder.

homeserver:
  # The Client-Server API base URL, and the server name in user ids (@user:<serverName>).
  url: ${JSON.stringify(url)}
  serverName: ${JSON.stringify(serverName)}

appservice:
  # Must never change once the homeserver knows it: it is part of every transaction id.
  id: courier
  # Written by \`courier register\` (tokens included); the homeserver reads the same file.
  registration: ./registration.yaml
  bind: { host: 127.0.0.1, port: 9000 }
  # How the homeserver reaches the bind address above.
  url: http://127.0.0.1:9000
  # The bot user: @courier:${serverName}
  senderLocalpart: courier
  namespaces:
    users:
      - regex: ${JSON.stringify(`@courier_.*:${escapeRegex(serverName)}`)}
        exclusive: true
    aliases: []
    rooms: []
  # false: the homeserver does not rate-limit our ghost users (the outbox paces them itself).
  rateLimited: false
  # Typing, receipts, presence and to-device messages.
  receiveEphemeral: true
  # maxBodyBytes: 33554432      # 32 MiB: a full Synapse transaction is 100 events x 64 KiB
  # allowQueryToken: false      # accept the deprecated ?access_token= from old homeservers
  # trustedProxies: []          # reverse proxies whose X-Forwarded-For/-Host/-Proto are believed, e.g. [loopback]

store:
  path: ./data/courier.sqlite
  # NORMAL survives a crash of this process; FULL also a power cut, at a lower commit rate.
  synchronous: NORMAL
  # retentionDays: 7            # how long sent requests and handled transactions are kept
  # url: postgres://courier@127.0.0.1/courier   # PostgreSQL instead of the file (docs/scaling.md); password in COURIER_STORE_URL

# End-to-end encryption (docs/encryption.md): the bot reads and answers in encrypted rooms and DMs.
# Needs org.matrix.msc3202 in the registration (\`courier register\` adds it) and two Synapse flags.
# encryption:
#   enabled: true
#   ghosts: false               # true: ghosts get devices too; false: they send in clear
#   storeKeyFile: ./data/crypto.key   # made on first start; or COURIER_ENCRYPTION_STORE_KEY. Back it up.
#   path: ./data/crypto.sqlite

outbox:
  # maxConcurrency: 32          # rooms sending at the same time
  rate: { perSecond: 50, burst: 100 } # per sender
  # rateBySender:
  #   "@courier:${serverName}": { perSecond: 200, burst: 400 }
  # retry: { baseMs: 250, capMs: 60000 }
  # requestTimeoutMs: 30000
  # ghostDevices: true          # send as device COURIER: dedupe survives a Synapse restart (>= 1.141)

dispatcher:
  # maxConcurrency: 16
  # handlerTimeoutMs: 30000
  # maxAttempts: 5

logging:
  level: info # fatal, error, warn, info, debug, trace or silent
  pretty: auto # auto: human-readable when stdout is a terminal

# The operator dashboard at <appservice url>/admin/ (lanes, recent sends, dead letters with a
# retry button, plugins, throughput). Off while no token is set; COURIER_ADMIN_TOKEN works too.
# admin:
#   token: <at least 16 random characters, e.g. from \`openssl rand -hex 24\`>
#   sessionMinutes: 720         # how long a browser login lasts

# Prometheus metrics at <appservice url>/metrics (see docs/operations.md for the names).
# metrics:
#   enabled: true
#   token: <when set, scrapes send Authorization: Bearer <token>>

# Loaded in this order. "module" is a path (./ or ../) or a package name; without it, the
# plugin shipped with matrix-courier under that name. "config" is checked by the plugin.
plugins:
  - name: echo
    config: { prefix: "" }
  - name: ping
  - name: remind # !remind 10m text, !remind 2026-12-01 09:00 text, !remind list
    config: { timezone: UTC }
`;
}

/** Writes the starter config; refuses to replace an existing file unless `force`. */
export function writeStarterConfig(path: string, options: { force?: boolean } & StarterOptions = {}): void {
  if (existsSync(path) && !options.force) {
    throw new ConfigError([{ file: path, message: `${path} already exists; use --force to overwrite it` }]);
  }
  // 0600: operators add tokens (appservice.asToken) to this file.
  writeFileAtomic(path, starterConfig(options), 0o600);
}
