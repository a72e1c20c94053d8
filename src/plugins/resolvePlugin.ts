import { pathToFileURL } from "node:url";
import { PluginError } from "../errors.ts";
import type { PluginDefinition } from "./definePlugin.ts";

// Shipped plugins sit in plugins/<name>/ at the package root; run from sources (Node's type
// stripping, jest) they are .ts files, from the build (dist/) .js files.
const OWN_EXTENSION = import.meta.url.endsWith(".ts") ? "ts" : "js";
const SHIPPED = new URL("../../plugins/", import.meta.url);

/**
 * Imports a plugin: a path (absolute, already resolved against the config file), an npm package
 * name, or, with no module given, the shipped plugin of that name. The module's default export
 * (or its `plugin` export) must be a `definePlugin(...)` value with the configured name.
 */
export async function resolvePlugin(name: string, module: string | undefined): Promise<PluginDefinition> {
  const specifier =
    module === undefined
      ? new URL(`${name}/index.${OWN_EXTENSION}`, SHIPPED).href
      : module.startsWith("/")
        ? pathToFileURL(module).href
        : module;
  let imported: { default?: unknown; plugin?: unknown };
  try {
    imported = (await import(specifier)) as typeof imported;
  } catch (error) {
    throw new PluginError(
      name,
      `cannot import ${module ?? `the shipped plugin`} (${specifier}): ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  const definition = (imported.default ?? imported.plugin) as PluginDefinition | undefined;
  if (!definition || typeof definition.setup !== "function") {
    throw new PluginError(name, `${specifier} has no default export made with definePlugin()`);
  }
  if (definition.name !== name) {
    throw new PluginError(name, `${specifier} defines the plugin "${definition.name}", not "${name}"`);
  }
  return definition;
}
