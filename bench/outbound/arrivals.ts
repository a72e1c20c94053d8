// What arrived at the fake homeserver from one run: messages stored, stored twice, and out of
// order within their room (stored after a message of a higher number in the same room).
export interface StoredEvent {
  roomId: string;
  content?: Record<string, unknown>;
}

export interface Arrivals {
  arrived: number;
  doubled: number;
  out_of_order: number;
}

export function countArrivals(events: readonly StoredEvent[], run: string): Arrivals {
  const seen = new Set<number>();
  const highest = new Map<string, number>();
  let doubled = 0;
  let outOfOrder = 0;
  for (const event of events) {
    if (event.content?.["bench.run"] !== run) continue;
    const n = event.content["bench.seq"] as number;
    if (seen.has(n)) {
      doubled++;
      continue;
    }
    seen.add(n);
    const top = highest.get(event.roomId) ?? -1;
    if (n < top) outOfOrder++;
    else highest.set(event.roomId, n);
  }
  return { arrived: seen.size, doubled, out_of_order: outOfOrder };
}
