import { boundServiceHeap } from "../runtime/serviceHeap.ts";
import { loadConfig } from "../config/loadConfig.ts";
import { checkTokens, loadRegistration, writeRegistration } from "../config/registration.ts";
import { writeStarterConfig } from "../config/initConfig.ts";
import { readableByOthers } from "../config/files.ts";
import type { Courier, CourierHooks, CourierOptions } from "../runtime/Courier.ts";
import { createCourier } from "../runtime/createCourier.ts";
import { createLogger } from "../logging/createLogger.ts";
import { terminalProgress } from "./terminalProgress.ts";

/** On SIGTERM/SIGINT pending requests keep leaving this long; a second signal exits at once. */
const DRAIN_ON_STOP_MS = 10_000;

const say = (line: string) => process.stdout.write(`${line}\n`);

export function runInit(path: string, force: boolean): void {
  writeStarterConfig(path, { force });
  say(`wrote ${path}; edit it, then run \`courier register --config ${path}\``);
}

export function runRegister(path: string, force: boolean): void {
  const config = loadConfig(path);
  const result = writeRegistration(config.appservice.registration, config, { force });
  say(
    `${result.path}: ${result.tokens === "kept" ? "updated, tokens kept" : "written with new tokens"} (mode 0600)`,
  );
  say("add it to the homeserver's app_service_config_files and restart the homeserver");
}

export interface StartOptions {
  /** Fault hooks (tests). @default none */
  readonly hooks?: CourierHooks;
  /** Where COURIER_* overrides are read. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** The dashboard's chat page (the development setup's). @default none */
  readonly chat?: CourierOptions["chat"];
  /** Warn about a config or registration others can read. @default true */
  readonly warnReadableFiles?: boolean;
}

/**
 * Loads the config file (with its COURIER_* overrides), checks it against the registration and
 * starts the framework on it: `courier start`, and `npm start`'s development setup on the file
 * it writes. Everything is checked before the store is touched: a bad config changes nothing.
 */
export async function startFromConfig(path: string, options: StartOptions = {}): Promise<Courier> {
  const config = loadConfig(path, options.env);
  const registration = loadRegistration(config.appservice.registration);
  checkTokens(config, registration, path);
  const logger = createLogger({ level: config.logging.level, pretty: config.logging.pretty });
  boundServiceHeap();
  // Both hold tokens (the registration's, the config's admin/metrics/webhook ones): a warning, not
  // a refusal, since a shared group may be deliberate.
  const files = options.warnReadableFiles === false ? [] : [path, config.appservice.registration];
  for (const { file, mode } of readableByOthers(files)) {
    logger.warn(
      { file, mode },
      `${file} is mode ${mode}: group or others can read it, and it holds tokens; run chmod 600 ${file}`,
    );
  }
  const courier = createCourier({
    config,
    registration,
    logger,
    progress: terminalProgress(logger),
    ...(options.hooks ? { hooks: options.hooks } : {}),
    ...(options.chat ? { chat: options.chat } : {}),
  });
  await courier.start();
  return courier;
}

/** Runs until a signal: the first one drains and stops, a second one exits at once. */
export async function runStart(path: string, options: { hooks?: CourierHooks } = {}): Promise<void> {
  const courier = await startFromConfig(path, options);
  await untilSignal({ stop: () => courier.stop(DRAIN_ON_STOP_MS, { drain: true }) });
}

export async function untilSignal(courier: { stop(): Promise<void> }): Promise<void> {
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        // Everything committed is safe on disk; the journal replays the rest on the next start.
        process.stderr.write(`courier: second ${signal}, exiting now\n`);
        process.exit(130);
      }
      stopping = true;
      courier.stop().then(resolve, (error: unknown) => {
        process.stderr.write(`courier: error while stopping: ${(error as Error).message}\n`);
        process.exit(1);
      });
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}
