// The development setup of `npm start` without a config.yaml: a local Synapse (installed into
// .cache on first use) with the development registration, a dev user, and the framework with
// the shipped plugins, run like `courier start` on a config file written here. So the CLI works
// against it (COURIER_CONFIG), COURIER_* overrides apply as they do to `courier start`, and the
// dashboard is on with a generated admin token and a chat page as the dev user.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { parse, stringify } from "yaml";
import { loadRegistration } from "../../src/config/registration.ts";
import { startFromConfig } from "../../src/cli/commands.ts";
import type { Courier } from "../../src/runtime/Courier.ts";
import { LocalSynapse, ensureSynapseInstalled } from "../synapse/LocalSynapse.ts";

export const DEV_USER = { localpart: "alice", password: "courier-dev-password" } as const;

export interface DevSetupOptions {
  /** Synapse's data, the store and the config file the setup writes. */
  readonly dataDir: string;
  /** The development registration (its url is where the framework listens). */
  readonly registrationPath: string;
  /** Synapse's client port. @default 8008 when free (a client set up once keeps working), else a free one */
  readonly homeserverPort?: number;
  /** COURIER_* overrides. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Progress lines (installing Synapse…). @default none */
  readonly say?: (line: string) => void;
}

export interface DevSetup {
  readonly synapse: LocalSynapse;
  readonly courier: Courier;
  /** The config file the framework runs on: `COURIER_CONFIG=<it> courier doctor`. */
  readonly configPath: string;
  readonly user: { readonly userId: string; readonly password: string };
  /** The dashboard with the admin token in the fragment: one click logs in. */
  readonly dashboardUrl: string;
  stop(): Promise<void>;
}

export async function startDevSetup(options: DevSetupOptions): Promise<DevSetup> {
  const say = options.say ?? (() => {});
  const registration = loadRegistration(options.registrationPath);
  await ensureSynapseInstalled(say);
  const port = options.homeserverPort ?? ((await isFree(8008)) ? 8008 : undefined);
  const synapse = await LocalSynapse.start({
    dataDir: path.join(options.dataDir, "synapse"),
    registrationFiles: [options.registrationPath],
    ...(port ? { port } : {}),
  });
  try {
    let userId = `@${DEV_USER.localpart}:${synapse.serverName}`;
    try {
      userId = (await synapse.registerUser(DEV_USER.localpart, DEV_USER.password)).userId;
    } catch {
      // Registered by an earlier run: same data folder, same password.
    }
    const configPath = path.join(options.dataDir, "config.yaml");
    const bind = new URL(registration.url);
    writeDevConfig(configPath, {
      homeserver: { url: synapse.baseUrl, serverName: synapse.serverName },
      appservice: {
        id: registration.id,
        registration: path.resolve(options.registrationPath),
        bind: { host: bind.hostname, port: Number(bind.port) },
        url: registration.url,
        senderLocalpart: registration.senderLocalpart,
        namespaces: registration.namespaces,
      },
      store: { path: "courier.sqlite" },
      logging: { level: "info" },
      admin: { token: previousAdminToken(configPath) ?? `dev_admin_${randomBytes(20).toString("hex")}` },
      plugins: [{ name: "echo" }, { name: "ping" }, { name: "remind" }],
    });
    const courier = await startFromConfig(configPath, {
      env: options.env ?? process.env,
      chat: { userId, password: DEV_USER.password, homeserverUrl: synapse.baseUrl },
      // The development registration is in the repository: its tokens are public anyway.
      warnReadableFiles: false,
    });
    const token = courier.config.admin.token;
    const listener = `http://${bind.hostname}:${courier.port}`;
    return {
      synapse,
      courier,
      configPath,
      user: { userId, password: DEV_USER.password },
      dashboardUrl: token === undefined ? "" : `${listener}/admin/#token=${encodeURIComponent(token)}`,
      async stop() {
        await courier.stop();
        await synapse.stop();
      },
    };
  } catch (error) {
    await synapse.stop();
    throw error;
  }
}

const HEADER = `# Written by \`npm start\` (the development setup) at every start: edits are overwritten.
# Point the CLI at it with COURIER_CONFIG=<this file>. COURIER_* variables override it, as they
# override any config file. For your own deployment, write one with \`courier init\`.
`;

function writeDevConfig(file: string, config: Record<string, unknown>): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  // It holds the admin token.
  writeFileSync(file, HEADER + stringify(config), { mode: 0o600 });
}

/** The admin token of the last run, so a dashboard link from it keeps working. */
function previousAdminToken(file: string): string | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const token = (parse(readFileSync(file, "utf8")) as { admin?: { token?: unknown } } | null)?.admin?.token;
    return typeof token === "string" && token.startsWith("dev_admin_") ? token : undefined;
  } catch {
    return undefined;
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
      .once("error", () => resolve(false))
      .listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}
