#!/usr/bin/env node
// The `courier` command. Plain JavaScript that any Node parses, so that the Node version is
// checked before anything that needs a newer one (node:sqlite) is loaded: an old Node gets one
// line saying what to do, not a stack trace. In a checkout it runs the TypeScript sources
// directly (Node's type stripping; nothing to build, never stale); from an installed package
// (inside node_modules, where Node does not strip types) it runs the build in dist/.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { engines } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const needed = /(\d+)\.(\d+)/.exec(engines.node).slice(1).map(Number);
const found = process.versions.node.split(".").map(Number);
if (found[0] < needed[0] || (found[0] === needed[0] && found[1] < needed[1])) {
  process.stderr.write(
    `courier: this is Node.js ${process.versions.node} (${process.execPath}); matrix-courier needs Node.js ${engines.node}. ` +
      "Inside the project, run `npx courier …` or an npm script: they use the Node pinned in package.json (installed by `npm ci`). " +
      "Elsewhere, install Node.js 22.16 or newer (https://nodejs.org/en/download).\n",
  );
  process.exit(1);
}

const source = join(root, "src", "cli", "main.ts");
const installed = root.split(sep).includes("node_modules") || !existsSync(source);
if (installed) {
  await import(pathToFileURL(join(root, "dist", "src", "cli", "main.js")).href);
} else if (process.features.typescript) {
  await import(pathToFileURL(source).href);
} else {
  // Node 22.16 and 22.17 strip types only when asked.
  const child = spawnSync(
    process.execPath,
    ["--experimental-strip-types", "--disable-warning=ExperimentalWarning", source, ...process.argv.slice(2)],
    { stdio: "inherit" },
  );
  process.exit(child.status ?? 1);
}
