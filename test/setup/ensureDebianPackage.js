// A Debian package some tests need (PostgreSQL, ngircd): present, or installed with apt-get when
// running as root, or one line saying how. Used by the jest globalSetup of the projects that need it.
import { spawnSync } from "node:child_process";
import { oneLine } from "./installSynapse.js";

/**
 * @param {{ name: string, present: () => boolean, purpose: string }} wanted
 */
export function ensureDebianPackage({ name, present, purpose }) {
  if (present()) return;
  const fix = `install it with \`sudo apt-get install -y ${name}\` (Debian, Ubuntu)`;
  const hasApt = spawnSync("sh", ["-c", "command -v apt-get"]).status === 0;
  if (process.getuid?.() !== 0 || !hasApt)
    throw oneLine(`${purpose} need ${name}, which is missing: ${fix}.`);
  process.stderr.write(
    `${name} is missing: installing Debian's package for ${purpose.toLowerCase()} (apt-get)\n`,
  );
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const apt = (args) =>
    spawnSync("apt-get", args, { stdio: ["ignore", "inherit", "inherit"], env }).status === 0;
  if (!(
    (apt(["install", "-y", "--no-install-recommends", name]) ||
      (apt(["update"]) && apt(["install", "-y", "--no-install-recommends", name]))) &&
    present()
  ))
    throw oneLine(`${purpose} need ${name}, and apt-get could not install it (its output is above): ${fix}.`);
}
