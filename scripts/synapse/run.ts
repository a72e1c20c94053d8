// Starts a local Synapse for development and keeps it running until Ctrl-C.
//
//   node scripts/synapse/run.ts --data .cache/synapse/dev --registration registration.yaml
//
// Options:
//   --data DIR              data directory (database, media, log, generated homeserver.yaml)
//                           default: .cache/synapse/dev
//   --registration FILE     appservice registration; repeatable
//   --server-name NAME      default: localhost
//   --port N                client listener port on 127.0.0.1; default: a free port
//   --rc-message R/B        rc_message per_second/burst_count, e.g. 0.2/10 (Synapse's default);
//                           default: effectively unlimited
//   --register-user NAME:PASSWORD[:admin]   register a user once Synapse is up; repeatable
//   --verbose               print Synapse's stdout/stderr (warnings and errors)
import { parseArgs } from "node:util";
import { LocalSynapse, type RateLimit } from "./LocalSynapse.ts";

function usage(message: string): never {
  process.stderr.write(
    `${message}\nusage: node scripts/synapse/run.ts [--data DIR] [--registration FILE]... ` +
      `[--server-name NAME] [--port N] [--rc-message PER_SECOND/BURST] ` +
      `[--register-user NAME:PASSWORD[:admin]]... [--verbose]\n`,
  );
  process.exit(2);
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        data: { type: "string", default: ".cache/synapse/dev" },
        registration: { type: "string", multiple: true, default: [] },
        "server-name": { type: "string", default: "localhost" },
        port: { type: "string" },
        "rc-message": { type: "string" },
        "register-user": { type: "string", multiple: true, default: [] },
        verbose: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (err) {
    usage((err as Error).message);
  }
  if (values.help) usage("Starts a local Synapse homeserver until Ctrl-C.");

  let port: number | undefined;
  if (values.port !== undefined) {
    port = Number(values.port);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) usage(`bad --port ${values.port}`);
  }
  let rcMessage: RateLimit | undefined;
  if (values["rc-message"] !== undefined) {
    const [perSecond, burst] = values["rc-message"].split("/").map(Number);
    if (!(perSecond! > 0) || !(burst! > 0)) usage(`bad --rc-message ${values["rc-message"]}`);
    rcMessage = { per_second: perSecond!, burst_count: burst! };
  }

  const verbose = values.verbose;
  const started = Date.now();
  const synapse = await LocalSynapse.start({
    dataDir: values.data,
    registrationFiles: values.registration,
    serverName: values["server-name"],
    port,
    rcMessage,
    log: (line) => {
      if (verbose || line.startsWith("[synapse")) process.stderr.write(`${line}\n`);
    },
  });

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\n${signal}: stopping Synapse…\n`);
    synapse.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));

  for (const spec of values["register-user"]) {
    const [name, password, admin] = spec.split(":");
    if (!name || !password) usage(`bad --register-user ${spec}`);
    try {
      const user = await synapse.registerUser(name, password, { admin: admin === "admin" });
      process.stdout.write(`registered ${user.userId} access_token=${user.accessToken}\n`);
    } catch (err) {
      process.stderr.write(`${(err as Error).message}\n`);
    }
  }

  process.stdout.write(
    [
      `Synapse ${synapse.serverName} is running at ${synapse.baseUrl} (started in ${Date.now() - started} ms)`,
      `  data:   ${synapse.dataDir}`,
      `  config: ${synapse.configPath} (regenerated on every start)`,
      `  log:    ${synapse.logPath}`,
      `  registration_shared_secret is in ${synapse.dataDir}/courier-secrets.json`,
      `Press Ctrl-C to stop.`,
      "",
    ].join("\n"),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
