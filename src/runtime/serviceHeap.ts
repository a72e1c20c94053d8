import { setFlagsFromString } from "node:v8";

/**
 * Bounds the V8 heap's growth in the service process (`courier start`, `npm start`). Under a
 * burst (a backlog replayed after a restart: tens of thousands of sends a second) V8 grows the
 * young generation to its maximum, and lets the old generation grow up to four times what
 * survived its last full collection before it collects again; the process keeps that memory.
 * Here the young generation stays at its starting size and the old one may only double, which
 * keeps a 100,000-message replay's peak RSS well under 200 MB at the same rate and CPU
 * (docs/decisions/0017-replay-memory.md). Process-wide, so the service entry sets it, not the
 * library: an embedder keeps V8's defaults. V8 reads both flags whenever it sizes a generation,
 * so setting them after start-up takes effect.
 */
export function boundServiceHeap(): void {
  setFlagsFromString("--semi-space-growth-factor=1");
  setFlagsFromString("--heap-growing-percent=100");
}
