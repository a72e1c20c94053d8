import { createRequire } from "node:module";
import { dirname, isAbsolute, resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import { applyEnv } from "./env.ts";
import { readYamlFile } from "./files.ts";
import { describe, problemsFromIssues } from "./problems.ts";
import { configSchema, type CourierConfig } from "./schema.ts";
import { childSchema } from "./schemaWalk.ts";
import type { z } from "zod";

/**
 * Reads, overrides (COURIER_* variables) and validates the config file; does no other I/O.
 * Throws a ConfigError listing every problem, each with its file and line (or variable), so a
 * bad config stops the process before anything, the store included, is touched. Relative paths
 * in the result (registration, store, plugin modules) are made absolute against the config
 * file's folder, whatever the current directory; so are relative paths set from the environment.
 */
export function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): CourierConfig {
  const yaml = readYamlFile(path, `config file not found: ${path} (run \`courier init\` to write one)`);
  if (yaml.data === null || typeof yaml.data !== "object" || Array.isArray(yaml.data)) {
    // Not "homeserver: missing": the file is something else altogether (a list, a word).
    throw new ConfigError([
      {
        file: yaml.file,
        line: 1,
        message: `expected a mapping (key: value) at the top, got ${describe(yaml.data)}`,
      },
    ]);
  }
  const { data, fromEnv, problems } = applyEnv(yaml.data, env, configSchema);
  dropEmptySections(data, configSchema);
  const parsed = configSchema.safeParse(data);
  if (!parsed.success) {
    problems.push(...problemsFromIssues(parsed.error.issues, { yaml, schema: configSchema, data, fromEnv }));
  }
  if (problems.length > 0 || !parsed.success) {
    // In file order, then the environment's, so the list reads top to bottom.
    throw new ConfigError(problems.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity)));
  }
  return resolvePaths(parsed.data, dirname(resolve(path)));
}

/**
 * `dispatcher:` with every line under it commented out is null in YAML; where the section may
 * be left out, take it as left out (its defaults), which is what the person meant.
 */
function dropEmptySections(data: unknown, schema: z.ZodType): void {
  if (data === null || typeof data !== "object" || Array.isArray(data)) return;
  const record = data as Record<string, unknown>;
  for (const [key, value] of Object.entries(record)) {
    const child = childSchema(schema, key);
    if (!child) continue;
    if (value === null && child.safeParse(undefined).success) delete record[key];
    else dropEmptySections(value, child);
  }
}

function resolvePaths(config: CourierConfig, folder: string): CourierConfig {
  const local = (p: string) => (isAbsolute(p) ? p : resolve(folder, p));
  return {
    ...config,
    appservice: { ...config.appservice, registration: local(config.appservice.registration) },
    store: {
      ...config.store,
      path: config.store.path === ":memory:" ? ":memory:" : local(config.store.path),
    },
    encryption: {
      ...config.encryption,
      path: local(config.encryption.path),
      storeKeyFile: local(config.encryption.storeKeyFile),
    },
    // Only ./ and ../ are paths; anything else is a package name, looked up from the config's
    // folder (its node_modules, then the parents'), like the operator's own `npm install` put it.
    plugins: config.plugins.map((entry) => {
      if (entry.module === undefined) return entry;
      if (/^\.\.?[/\\]/.test(entry.module)) return { ...entry, module: local(entry.module) };
      return { ...entry, module: packageEntry(entry.module, folder) ?? entry.module };
    }),
  };
}

/** The entry file of a package as seen from `folder`; undefined when not found there (import() tries from here). */
function packageEntry(name: string, folder: string): string | undefined {
  try {
    return createRequire(resolve(folder, "package.json")).resolve(name);
  } catch {
    return undefined;
  }
}
