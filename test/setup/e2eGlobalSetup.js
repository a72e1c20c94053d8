// The e2e project's jest globalSetup: Synapse for every e2e test, the matrix-nio E2EE client for
// the encryption tests, ngircd for the IRC bridge's.
// Jest runs it only when an e2e test is selected.
import { existsSync } from "node:fs";
import { ensureDebianPackage } from "./ensureDebianPackage.js";
import installE2eeClient from "./installE2eeClient.js";
import installSynapse from "./installSynapse.js";

export default function e2eGlobalSetup() {
  installSynapse();
  installE2eeClient();
  ensureDebianPackage({
    name: "ngircd",
    purpose: "The IRC bridge's end-to-end tests",
    present: () => existsSync(process.env.NGIRCD_PATH ?? "/usr/sbin/ngircd"),
  });
}
