// `npm run bench`: each benchmark in its own process, one after the other (they would compete
// for the two cores otherwise). Each prints one JSON line per result.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const BENCHES = ["outboxThroughput.ts", "outboxMemory.ts", "inboundThroughput.ts", "outboundSideBySide.ts"];
const only = process.argv[2];
let failed = 0;
for (const file of BENCHES.filter((b) => !only || b.includes(only))) {
  const result = spawnSync(process.execPath, [fileURLToPath(new URL(file, import.meta.url))], {
    stdio: "inherit",
  });
  if (result.status !== 0) {
    failed++;
    process.stderr.write(`${file} failed with ${result.status ?? result.signal}\n`);
  }
}
process.exit(failed ? 1 : 0);
