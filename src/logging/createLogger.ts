import { pino, type Logger, type LevelWithSilent } from "pino";
import { build as prettyStream } from "pino-pretty";

/**
 * Every place a secret can sit in a log object. Set once when the logger is built (pino compiles
 * them), so no call site has to remember.
 */
export const REDACT_PATHS = [
  "as_token",
  "hs_token",
  "access_token",
  "asToken",
  "hsToken",
  "accessToken",
  "password",
  "authorization",
  "*.as_token",
  "*.hs_token",
  "*.access_token",
  "*.asToken",
  "*.hsToken",
  "*.accessToken",
  "*.password",
  "*.authorization",
  "headers.authorization",
  "req.headers.authorization",
  'req.headers["x-hub-signature-256"]',
];

export interface LoggerOptions {
  /** @default "info" */
  readonly level?: LevelWithSilent;
  /** Where lines go. @default stdout */
  readonly destination?: NodeJS.WritableStream;
  /**
   * Human-readable lines (pino-pretty) instead of JSON; "auto": when stdout is a terminal.
   * Redaction happens before formatting, so pretty lines hide the same secrets. @default false
   */
  readonly pretty?: boolean | "auto";
}

/** Whether `pretty` means pretty lines here: "auto" asks whether stdout is a terminal. */
export function wantsPretty(
  pretty: boolean | "auto" | undefined,
  stdoutIsTty = process.stdout.isTTY,
): boolean {
  return pretty === "auto" ? stdoutIsTty === true : pretty === true;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      base: { name: "courier" },
    },
    wantsPretty(options.pretty)
      ? prettyStream({
          destination: options.destination ?? 1,
          sync: true,
          colorize: options.destination === undefined && process.stdout.isTTY === true,
          translateTime: "SYS:HH:MM:ss.l",
          ignore: "pid,hostname,name",
        })
      : (options.destination ?? process.stdout),
  );
}

/** Removes known secrets from a free-text message (errors from libraries may quote them). */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 8) out = out.split(secret).join("[redacted]");
  return out;
}
