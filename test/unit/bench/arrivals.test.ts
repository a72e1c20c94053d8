// The fault benchmark's count of what the homeserver stored: only this run's messages, a message
// stored twice counted once as arrived and once as doubled, order judged per room.
import { countArrivals } from "../../../bench/outbound/arrivals.ts";

const event = (roomId: string, run: string, seq: number) => ({
  roomId,
  content: { "bench.run": run, "bench.seq": seq },
});

test("counts arrivals, doubles and out-of-order messages of one run, per room", () => {
  const events = [
    event("!a", "r1", 0),
    event("!b", "r1", 1),
    event("!a", "r1", 2),
    event("!a", "other", 9),
    event("!b", "r1", 3),
    event("!a", "r1", 2), // stored twice
    event("!b", "r1", 5),
    event("!b", "r1", 4), // after 5 in its room
    event("!a", "r1", 6), // room !a's own order is fine
  ];
  expect(countArrivals(events, "r1")).toEqual({ arrived: 7, doubled: 1, out_of_order: 1 });
});

test("a run with nothing stored arrives at nothing", () => {
  expect(countArrivals([event("!a", "r2", 0), { roomId: "!a" }], "r1")).toEqual({
    arrived: 0,
    doubled: 0,
    out_of_order: 0,
  });
});
