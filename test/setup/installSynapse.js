// Jest globalSetup of the projects that run a real Synapse (e2e, browser): installs the pinned
// Synapse into .cache once, before any test file starts one (scripts/synapse/install.sh returns
// at once when it is there). Plain JavaScript: jest loads global setups without our transform.
import { spawnSync } from "node:child_process";
import { fileURLToPath, URL } from "node:url";

const INSTALL = fileURLToPath(new URL("../../scripts/synapse/install.sh", import.meta.url));

export default function installSynapse() {
  const result = spawnSync("bash", [INSTALL], { stdio: ["ignore", "inherit", "inherit"] });
  if (result.status !== 0) throw oneLine(`${INSTALL} failed (exit ${result.status}); its output is above.`);
}

/** An error jest prints as its message alone: the fix is in it, a stack trace would hide it. */
export function oneLine(message) {
  const error = new Error(message);
  error.stack = message;
  return error;
}
