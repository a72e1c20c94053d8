// ESM + TypeScript through ts-jest. Sources import siblings with their `.ts` extension so that
// Node 24 can also run them directly (type stripping) in the child processes the crash tests spawn.
const tsJest = [
  "ts-jest",
  { useESM: true, tsconfig: "tsconfig.json", diagnostics: { ignoreCodes: ["TS151001"] } },
];
const common = {
  extensionsToTreatAsEsm: [".ts"],
  transform: { "^.+\\.ts$": tsJest },
  testEnvironment: "node",
  // ts-jest rewrites the `.ts` specifiers to `.js`; map them back to the sources.
  moduleNameMapper: { "^(\\.{1,2}/.*)\\.js$": "$1" },
};
export default {
  projects: [
    { ...common, displayName: "unit", testMatch: ["<rootDir>/test/unit/**/*.test.ts"] },
    // Its globalSetup installs PostgreSQL (apt, as root) for the store tests when missing, or says how.
    {
      ...common,
      displayName: "integration",
      testMatch: ["<rootDir>/test/integration/**/*.test.ts"],
      globalSetup: "<rootDir>/test/setup/installPostgres.js",
    },
    // A real browser (Debian's chromium via playwright-core) against the fake homeserver.
    // Its globalSetup installs chromium (apt, as root) and Synapse when missing, or says how.
    {
      ...common,
      displayName: "browser",
      testMatch: ["<rootDir>/test/browser/**/*.test.ts"],
      globalSetup: "<rootDir>/test/setup/browserGlobalSetup.js",
    },
    // Property-based fuzzing (fast-check), bounded in runs and time; FUZZ_SEED replays a run.
    { ...common, displayName: "fuzz", testMatch: ["<rootDir>/test/fuzz/**/*.test.ts"] },
    // Against a real Synapse (scripts/synapse): installed once into .cache, started per test file;
    // ngircd (apt, as root) for the IRC bridge.
    {
      ...common,
      displayName: "e2e",
      testMatch: ["<rootDir>/test/e2e/**/*.test.ts"],
      globalSetup: "<rootDir>/test/setup/e2eGlobalSetup.js",
    },
  ],
};
