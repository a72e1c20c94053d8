import { setFlagsFromString } from "node:v8";

/**
 * Keeps V8's young generation at its starting size in the service process (`courier start`,
 * `npm start`). Under a burst (a backlog replayed after a restart: tens of thousands of sends a
 * second) V8 grows the young generation to its maximum and the heap with it, and the process
 * keeps that memory; held at its starting size, the peak RSS of a 100,000-message replay drops
 * by about 90 MB at the same rate (docs/performance.md). Process-wide, so the service entry sets
 * it, not the library: an embedder keeps V8's defaults. V8 reads the flag each time the young
 * generation would grow, so setting it after start-up takes effect.
 */
export function keepYoungGenerationSmall(): void {
  setFlagsFromString("--semi-space-growth-factor=1");
}
if (process.env.EXP_HGP) setFlagsFromString(`--heap-growing-percent=${process.env.EXP_HGP}`);
