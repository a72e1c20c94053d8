// The peer frameworks are devDependencies of the benchmarks only: bench/peers has its own
// package.json and lockfile, installed here on first use, so the root's npm ci stays free of them
// (and of the native crypto package's install script, which bench/peers/package.json does not allow).
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { peersInstalled } from "../peers/loadPeers.ts";

export function ensurePeersInstalled(): void {
  if (peersInstalled()) return;
  const cwd = fileURLToPath(new URL("../peers/", import.meta.url));
  process.stderr.write("bench: installing the peer frameworks into bench/peers (npm ci)\n");
  const result = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd, stdio: ["ignore", 2, 2] });
  if (result.status !== 0 || !peersInstalled()) throw new Error("bench: npm ci in bench/peers failed");
}
