// `courier start --config <path>` with the fault hook a crash test names in COURIER_FAULT,
// injected through the composition root: production code has no such switch.
import { runStart } from "../../src/cli/commands.ts";
import type { CourierHooks } from "../../src/runtime/Courier.ts";

const FAULTS: Readonly<Record<string, CourierHooks>> = {
  // Dies between the journal's commit and the answer: the homeserver must send it again.
  "kill-after-journal": { afterJournal: () => process.kill(process.pid, "SIGKILL") },
};

const fault = process.env.COURIER_FAULT ?? "";
const hooks = FAULTS[fault];
if (!hooks)
  throw new Error(`unknown COURIER_FAULT ${JSON.stringify(fault)}; known: ${Object.keys(FAULTS).join(", ")}`);
await runStart(process.argv[2]!, { hooks });
