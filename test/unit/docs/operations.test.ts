// docs/operations.md names every metric the registry exports (own metrics; the process metrics
// are described as a group) and the process metrics it quotes exist.
import { readFileSync } from "node:fs";
import { CourierMetrics } from "../../../src/ops/metrics/CourierMetrics.ts";

test("every courier metric is documented, and the quoted process metrics exist", async () => {
  const page = readFileSync(new URL("../../../docs/operations.md", import.meta.url), "utf8");
  const metrics = new CourierMetrics({
    stats: async () => ({ lanes: [], totals: { pending: 0, sent: 0, dead: 0 } }),
  } as never);
  metrics.watchOwnership({ outbox: { ownedCount: () => 0 }, inbound: { ownedCount: () => 0 } });
  const names = (await metrics.registry.getMetricsAsJSON()).map((m) => m.name);
  const own = names.filter((n) => !/^courier_(process|nodejs)_/.test(n));
  for (const name of own)
    expect({ name, documented: page.includes(`\`${name}\``) }).toEqual({ name, documented: true });
  // And the other way: every metric the page's table names exists.
  const tabled = [...page.matchAll(/^\| `(courier_[a-z_]+)`/gm)].map((m) => m[1]!);
  expect(tabled.length).toBeGreaterThan(0);
  for (const name of tabled) expect({ name, exists: names.includes(name) }).toEqual({ name, exists: true });
  for (const quoted of ["courier_process_cpu_seconds_total", "courier_nodejs_eventloop_lag_seconds"])
    expect(names).toContain(quoted);
  metrics.registry.clear();
});
