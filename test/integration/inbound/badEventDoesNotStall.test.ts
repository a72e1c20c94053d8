// One malformed event must not stop its room, or the dispatcher (issue #14, part 2). Measured
// before the fix: an event without `content` made the dispatch throw, the dispatcher retried it
// at the head of its room forever, the next `!echo` there was never answered, and once 2,000 more
// events filled the buffer, a command in another room went unanswered too. Here the exact
// sequence runs through a whole Courier against the fake homeserver.
import { request } from "undici";
import { startDashboardStack, type DashboardStack } from "../../support/dashboardStack.ts";

const ROOM_A = "!a:fake.test";
const ROOM_B = "!b:fake.test";
const ALICE = "@alice:fake.test";

let stack: DashboardStack;
let txn = 0;
let eventNo = 0;

const message = (room: string, body: string) => ({
  event_id: `$ev${++eventNo}`,
  room_id: room,
  sender: ALICE,
  type: "m.room.message",
  origin_server_ts: 1_700_000_000_000 + eventNo,
  content: { msgtype: "m.text", body },
});

async function push(events: unknown[]): Promise<number> {
  const res = await request(`${stack.url}/_matrix/app/v1/transactions/${++txn}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${stack.hsToken}`, "content-type": "application/json" },
    body: JSON.stringify({ events }),
  });
  await res.body.dump();
  return res.statusCode;
}

const replies = (room: string) =>
  stack.hs
    .roomEvents(room)
    .filter((e) => e.sender === stack.hs.botUserId)
    .map((e) => e.content.body);

beforeAll(async () => {
  stack = await startDashboardStack({ adminToken: null, shippedPlugins: [{ name: "echo" }] });
}, 30_000);
afterAll(async () => stack?.stop());

test("an event without content, then !echo in its room, 2,000 more events, !echo in another room: both answered", async () => {
  const contentless = { ...message(ROOM_A, ""), content: undefined };
  expect(await push([contentless])).toBe(200);
  expect(await push([message(ROOM_A, "!echo first")])).toBe(200);
  for (let t = 0; t < 20; t++) {
    expect(await push(Array.from({ length: 100 }, (_, i) => message(ROOM_A, `chatter ${t * 100 + i}`)))).toBe(
      200,
    );
  }
  expect(await push([message(ROOM_B, "!echo second")])).toBe(200);

  await stack.hs.waitFor(
    () => replies(ROOM_A).length >= 1 && replies(ROOM_B).length >= 1,
    30_000,
    "both echoes",
  );
  await stack.courier.dispatcher.onIdle();
  expect(replies(ROOM_A)).toEqual(["first"]);
  expect(replies(ROOM_B)).toEqual(["second"]);
}, 60_000);
