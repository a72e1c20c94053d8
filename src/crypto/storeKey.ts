import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "pino";
import { ConfigError, type ConfigProblem } from "../errors.ts";

const KEY_BYTES = 32;

/**
 * The key the crypto store is encrypted with (`StoreHandle.openWithKey`: a raw key opens in
 * milliseconds, a passphrase is stretched on every open). From `encryption.storeKey` (the
 * environment) when set, else from `storeKeyFile`, which is made (0600, random) on first start.
 * The key is never logged; a bad one stops the start with a message naming where it came from.
 */
export function readStoreKey(
  settings: { readonly storeKey?: string | undefined; readonly storeKeyFile: string },
  log: Logger,
): Uint8Array {
  if (settings.storeKey !== undefined)
    return decode(settings.storeKey, { file: "environment", key: "encryption.storeKey" });
  let text: string;
  try {
    text = readFileSync(settings.storeKeyFile, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    mkdirSync(dirname(settings.storeKeyFile), { recursive: true, mode: 0o700 });
    writeFileSync(settings.storeKeyFile, `${randomBytes(KEY_BYTES).toString("base64")}\n`, {
      mode: 0o600,
      flag: "wx",
    });
    log.warn(
      { file: settings.storeKeyFile },
      "made a new crypto store key: back it up with the crypto store, which it alone opens",
    );
    text = readFileSync(settings.storeKeyFile, "utf8");
  }
  if ((statSync(settings.storeKeyFile).mode & 0o077) !== 0)
    log.warn(
      { file: settings.storeKeyFile },
      "the crypto store key file is readable by others: chmod 600 it",
    );
  return decode(text.trim(), { file: settings.storeKeyFile });
}

function decode(text: string, where: Omit<ConfigProblem, "message">): Uint8Array {
  const key = Buffer.from(text, "base64");
  if (key.length !== KEY_BYTES || key.toString("base64") !== text) {
    throw new ConfigError([
      { ...where, message: `the crypto store key must be ${KEY_BYTES} bytes in base64 (44 characters)` },
    ]);
  }
  return new Uint8Array(key);
}
