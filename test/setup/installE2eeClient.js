// Installs the independent E2EE test client (matrix-nio with vodozemac, scripts/e2ee-client) into
// .cache/e2ee-client/venv once, before any e2e test file starts one (install.sh returns at once
// when it is there). Plain JavaScript: jest loads global setups without our transform.
import { spawnSync } from "node:child_process";
import { fileURLToPath, URL } from "node:url";
import { oneLine } from "./installSynapse.js";

const INSTALL = fileURLToPath(new URL("../../scripts/e2ee-client/install.sh", import.meta.url));

export default function installE2eeClient() {
  const result = spawnSync("bash", [INSTALL], { stdio: ["ignore", "inherit", "inherit"] });
  if (result.status !== 0) {
    throw oneLine(
      `${INSTALL} failed (exit ${result.status}); its output is above. The E2EE tests need Python >= 3.10 and PyPI.`,
    );
  }
}
