import { parse } from "yaml";
import type { z } from "zod";
import type { ConfigProblem } from "../errors.ts";
import { closest, formatKey } from "./problems.ts";
import { leafSettings } from "./schemaWalk.ts";

export const ENV_PREFIX = "COURIER_";

/** `["outbox", "rate", "perSecond"]` → `COURIER_OUTBOX_RATE_PER_SECOND`. */
export function envName(path: readonly string[]): string {
  return ENV_PREFIX + path.map((key) => key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()).join("_");
}

export interface EnvOverrides {
  /** The config with the overrides applied (a copy; the input is not changed). */
  readonly data: unknown;
  /** Key path (formatKey) → the variable that set it, so a bad value names the variable. */
  readonly fromEnv: Map<string, string>;
  /** COURIER_* variables that look like settings but name none (typos). */
  readonly problems: ConfigProblem[];
}

/**
 * Applies COURIER_* variables on top of the parsed file, before validation. Only settings that
 * hold one value can be set (not lists or maps). A value is taken as the plain string when the
 * setting accepts it (tokens made of digits stay strings), otherwise as a YAML scalar ("9000" →
 * 9000, "true" → true). An empty variable counts as unset (compose files' `${X:-}`).
 */
export function applyEnv(data: unknown, env: NodeJS.ProcessEnv, schema: z.ZodType): EnvOverrides {
  const leaves = new Map(leafSettings(schema).map((leaf) => [envName(leaf.path), leaf]));
  const sections = new Set([...leaves.values()].map((leaf) => envName(leaf.path.slice(0, 1))));
  const result = structuredClone(isObject(data) ? data : {}) as Record<string, unknown>;
  const fromEnv = new Map<string, string>();
  const problems: ConfigProblem[] = [];
  for (const [variable, raw] of Object.entries(env)) {
    if (!variable.startsWith(ENV_PREFIX) || raw === undefined || raw === "") continue;
    const leaf = leaves.get(variable);
    if (!leaf) {
      // Other COURIER_* variables (COURIER_FAULT, ...) are not settings; only flag likely typos.
      if ([...sections].some((section) => variable.startsWith(`${section}_`))) {
        const guess = closest(variable, [...leaves.keys()]);
        const hint = guess ? `did you mean ${guess}?` : "the settings are listed in config.example.yaml";
        problems.push({ file: "environment", variable, message: `not a setting; ${hint}` });
      }
      continue;
    }
    const parent = parentOf(result, leaf.path);
    if (!parent) continue; // the file has a non-map there: validation reports it at its line
    parent[leaf.path.at(-1)!] = leaf.schema.safeParse(raw).success ? raw : scalar(raw);
    fromEnv.set(formatKey(leaf.path), variable);
  }
  return { data: result, fromEnv, problems };
}

function scalar(raw: string): unknown {
  try {
    return parse(raw) as unknown;
  } catch {
    return raw;
  }
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value);

/** The map that holds the setting, created where the file has none. */
function parentOf(
  root: Record<string, unknown>,
  path: readonly string[],
): Record<string, unknown> | undefined {
  let current = root;
  for (const key of path.slice(0, -1)) {
    current[key] ??= {};
    const next = current[key];
    if (!isObject(next)) return undefined;
    current = next;
  }
  return current;
}
