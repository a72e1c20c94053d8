// Jest globalSetup half of the browser project: makes sure there is a Chromium to drive. Found
// ($CHROMIUM_PATH, /usr/bin/chromium, chromium on PATH): nothing to do. Missing and running as
// root with apt-get: installs Debian's package. Otherwise fails with one line saying how.
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { oneLine } from "./installSynapse.js";

const DEBIAN_PATH = "/usr/bin/chromium";

export default function installChromium() {
  const given = process.env.CHROMIUM_PATH;
  if (given && !executable(given))
    throw oneLine(`CHROMIUM_PATH is ${given}, which is not an executable file.`);
  if (findChromium()) return;
  const fix =
    "install it with `sudo apt-get install -y chromium` (Debian, Ubuntu), or set CHROMIUM_PATH to a Chromium or Chrome binary";
  if (process.getuid?.() !== 0 || !onPath("apt-get")) {
    throw oneLine(`The browser tests need Chromium, and none was found: ${fix}.`);
  }
  process.stderr.write(
    "Chromium is missing: installing Debian's chromium package for the browser tests (apt-get)\n",
  );
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const apt = (args) =>
    spawnSync("apt-get", args, { stdio: ["ignore", "inherit", "inherit"], env }).status === 0;
  if (!(apt(["update"]) && apt(["install", "-y", "--no-install-recommends", "chromium"]) && findChromium())) {
    throw oneLine(
      `The browser tests need Chromium, and apt-get could not install it (its output is above): ${fix}.`,
    );
  }
}

/** Sets CHROMIUM_PATH for the test workers when the browser is only found on PATH. */
function findChromium() {
  if (process.env.CHROMIUM_PATH || executable(DEBIAN_PATH)) return true;
  const found = onPath("chromium");
  if (found) process.env.CHROMIUM_PATH = found;
  return found !== undefined;
}

function onPath(command) {
  const result = spawnSync("sh", ["-c", `command -v ${command}`], { encoding: "utf8" });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

function executable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
