// Jest globalSetup of the integration project: the PostgreSQL store tests start a throwaway
// cluster (test/support/postgresCluster.ts) from Debian's server binaries.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ensureDebianPackage } from "./ensureDebianPackage.js";

const ROOT = "/usr/lib/postgresql";

export default function installPostgres() {
  ensureDebianPackage({
    name: "postgresql",
    purpose: "The PostgreSQL store tests",
    present: () =>
      existsSync(ROOT) && readdirSync(ROOT).some((v) => existsSync(join(ROOT, v, "bin", "initdb"))),
  });
}
