// The framework's side of a bridge, through the plugin harness (outbox + plugin host, requests
// recorded) with a connector made here: remote ids through the message map both ways, capability
// detection, redelivery, the failure notice, and a portal made by an alias query.
import { z } from "zod";
import { defineBridge } from "../../../src/bridge/defineBridge.ts";
import type { BridgeConnector, BridgeHost, OutgoingMessage } from "../../../src/bridge/BridgeConnector.ts";
import { PermanentRemoteError } from "../../../src/errors.ts";
import { pluginHarness, type HarnessOptions, type PluginHarness } from "../../support/pluginHarness.ts";

const ROOM = "!r:x";
const ann = { id: "ann", displayName: "Ann" };

async function until<T>(what: string, check: () => T | undefined): Promise<T> {
  for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

interface Calls {
  sent: OutgoingMessage[];
  edited: Array<OutgoingMessage & { remoteId: string }>;
  redacted: string[];
  reacted: string[];
}

/** A connector whose network gives ids `x<n>`; `full` adds the edit/redact/react capabilities. */
function fakeBridge(full: boolean) {
  const calls: Calls = { sent: [], edited: [], redacted: [], reacted: [] };
  const holder: { host?: BridgeHost } = {};
  const base: BridgeConnector = {
    connect: async (host) => void (holder.host = host),
    disconnect: async () => {},
    sendMessage: async (message) => {
      if (message.text === "refused") throw new PermanentRemoteError("fake", "not allowed");
      calls.sent.push(message);
      return `x${calls.sent.length}`;
    },
    lookupUser: async (id) => ({ id, displayName: id }),
    lookupChannel: async (id) => ({ id, name: id }),
  };
  const connector = full
    ? {
        ...base,
        editMessage: async (m: OutgoingMessage & { remoteId: string }) => void calls.edited.push(m),
        redactMessage: async (_c: string, remoteId: string) => void calls.redacted.push(remoteId),
        backfill: async (channelId: string, limit: number) => {
          for (let i = 0; i < limit; i++) {
            await holder.host!.report({
              kind: "message",
              channelId,
              id: `old${i}`,
              sender: ann,
              text: `earlier ${i}`,
            });
          }
        },
        react: async (_c: string, remoteId: string, key: string) =>
          void calls.reacted.push(`${remoteId}:${key}`),
      }
    : base;
  const plugin = defineBridge({
    name: "fake",
    config: { extra: z.string().default("") },
    connector: () => connector,
  });
  return { plugin, calls, host: () => holder.host! };
}

let harness: PluginHarness;

async function untilStored(what: string, key: string): Promise<void> {
  for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
    if ((await harness.data.forPlugin("fake").get(key)) !== undefined) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}
afterEach(async () => harness?.stop());

async function start(full: boolean, state?: HarnessOptions["state"]) {
  harness = await pluginHarness(state ? { state } : {});
  const bridge = fakeBridge(full);
  expect(
    await harness.host.load(bridge.plugin, {
      portals: [{ channel: "c", room: ROOM }],
      remoteRate: { perSecond: 1000, burst: 100 },
      remoteMaxAttempts: 2,
      backfill: 2,
    }),
  ).toBe(true);
  await harness.host.start();
  return bridge;
}

const bodies = (h: PluginHarness) =>
  h.sent.filter((r) => r.body).map((r) => ({ path: r.path, ...JSON.parse(r.body!) }));

test("remote messages reach the room from their ghost once; edits, replies and redactions map through remote ids", async () => {
  const { host } = await start(true);
  await host().report({ kind: "message", channelId: "c", id: "r1", sender: ann, text: "one" });
  await host().report({ kind: "message", channelId: "c", id: "r1", sender: ann, text: "one" }); // redelivered
  await harness.outbox.onIdle();
  const first = await until("the first message", () => bodies(harness).find((b) => b.body === "one"));
  expect(first.path).toContain("user_id=%40courier_fake_ann%3Ax");
  // The message map is filled once the homeserver answered with the event id.
  await untilStored("the map entry of r1", "msg:r:c\u0000r1");
  await host().report({ kind: "message", channelId: "c", id: "r2", sender: ann, text: "uno", editOf: "r1" });
  await host().report({ kind: "message", channelId: "c", id: "r3", sender: ann, text: "re", replyTo: "r1" });
  await host().report({ kind: "redaction", channelId: "c", id: "r4", sender: ann, target: "r1" });
  const redaction = await until("the redaction", () => harness.sent.find((r) => r.path.includes("/redact/")));
  const sent = bodies(harness);
  const firstEventId = "$sent" + String(harness.sent.findIndex((r) => r.body?.includes('"one"')) + 1);
  expect(sent.filter((b) => b.body === "one")).toHaveLength(1);
  expect(sent.find((b) => b.body === "* uno")).toMatchObject({
    "m.new_content": { msgtype: "m.text", body: "uno" },
    "m.relates_to": { rel_type: "m.replace", event_id: firstEventId },
  });
  expect(sent.find((b) => b.body === "re")).toMatchObject({
    "m.relates_to": { "m.in_reply_to": { event_id: firstEventId } },
  });
  expect(redaction.path).toContain(`/redact/${encodeURIComponent(firstEventId)}/`);
});

test("Matrix messages reach the connector once per event; edits, redactions and reactions use the remote id", async () => {
  const { calls } = await start(true);
  const say = (event_id: string, content: object, type = "m.room.message") =>
    harness.dispatch({ type, event_id, room_id: ROOM, sender: "@bob:x", content });
  await harness.dispatch({
    type: "m.room.member",
    state_key: "@bob:x",
    room_id: ROOM,
    sender: "@bob:x",
    content: { membership: "join", displayname: "Bobby" },
  });
  await say("$m1", { msgtype: "m.text", body: "hello" });
  await say("$m1", { msgtype: "m.text", body: "hello" }); // the same event again
  await until("the send", () => calls.sent.length === 1);
  await untilStored("the map entry of $m1", "msg:m:$m1");
  await say("$m2", {
    msgtype: "m.text",
    body: "* hallo",
    "m.new_content": { msgtype: "m.text", body: "hallo" },
    "m.relates_to": { rel_type: "m.replace", event_id: "$m1" },
  });
  await say(
    "$m3",
    { "m.relates_to": { rel_type: "m.annotation", event_id: "$m1", key: "👍" } },
    "m.reaction",
  );
  await harness.dispatch({
    type: "m.room.redaction",
    event_id: "$m4",
    room_id: ROOM,
    sender: "@bob:x",
    redacts: "$m1",
    content: {},
  });
  await until("the redaction", () => calls.redacted.length === 1);
  expect(calls.sent.map((m) => m.text)).toEqual(["hello"]);
  expect(calls.sent[0]).toMatchObject({
    channelId: "c",
    eventId: "$m1",
    relayed: true,
    sender: { userId: "@bob:x", displayName: "Bobby" },
  });
  expect(calls.edited.map((m) => [m.remoteId, m.text])).toEqual([["x1", "hallo"]]);
  expect(calls.reacted).toEqual(["x1:👍"]);
  expect(calls.redacted).toEqual(["x1"]);
});

test("without the edit capability an edit is sent as a new message marked editOf; a refused send is reported in the room", async () => {
  const { calls } = await start(false);
  const say = (event_id: string, content: object) =>
    harness.dispatch({ type: "m.room.message", event_id, room_id: ROOM, sender: "@bob:x", content });
  await say("$m1", { msgtype: "m.text", body: "hello" });
  await say("$m2", {
    msgtype: "m.text",
    body: "* hallo",
    "m.new_content": { msgtype: "m.text", body: "hallo" },
    "m.relates_to": { rel_type: "m.replace", event_id: "$m1" },
  });
  await say("$m3", { msgtype: "m.text", body: "refused" });
  const notice = await until("the notice", () => bodies(harness).find((b) => b.msgtype === "m.notice"));
  expect(calls.sent.map((m) => [m.text, m.editOf])).toEqual([
    ["hello", undefined],
    ["hallo", "$m1"],
  ]);
  expect(notice.body).toContain("not allowed");
  expect(notice["m.relates_to"]).toEqual({ "m.in_reply_to": { event_id: "$m3" } });
});

test("an alias query for #<prefix><channel> creates a portal, backfilled; ghosts of the namespace are claimed", async () => {
  const { host } = await start(true);
  expect(await harness.host.aliasExists("#fake_lobby:x")).toBe(true);
  expect(await harness.host.aliasExists("#other_lobby:x")).toBe(false);
  // The connector's history comes in through the journal like any remote event, in order.
  await until("the backfill", () => harness.sent.find((r) => r.body?.includes("earlier 1")));
  // The new portal bridges: a line of the channel goes to the room made for it.
  await host().report({ kind: "message", channelId: "lobby", sender: ann, text: "in the lobby" });
  const request = await until("the lobby line", () =>
    harness.sent.find((r) => r.body?.includes("in the lobby")),
  );
  expect(request.path).toContain("/rooms/!new%3Atest/send/");
  const inNewRoom = bodies(harness).filter((b) => b.path.includes("!new%3Atest"));
  expect(inNewRoom.map((b) => b.body)).toEqual(["earlier 0", "earlier 1", "in the lobby"]);
  expect(await harness.host.userExists("@courier_fake_ann:x")).toBe(true);
  expect(await harness.host.userExists("@courier_fake_Ann:x")).toBe(false);
});

test("a remote topic becomes m.room.topic; a Matrix reply to a ghost's message names its remote sender", async () => {
  const { host, calls } = await start(true);
  await host().report({ kind: "topic", channelId: "c", topic: "new topic" });
  const topic = await until("the topic", () =>
    harness.sent.find((r) => r.path.includes("/state/m.room.topic/")),
  );
  expect(JSON.parse(topic.body!)).toEqual({ topic: "new topic" });

  await host().report({ kind: "message", channelId: "c", sender: ann, text: "question" });
  const index = await until("ann's line", () => {
    const i = harness.sent.findIndex((r) => r.body?.includes('"question"'));
    return i === -1 ? undefined : i;
  });
  const eventId = `$sent${index + 1}`;
  await untilStored("ann's line's sender", `msg:s:${eventId}`);
  await harness.dispatch({
    type: "m.room.message",
    event_id: "$answer",
    room_id: ROOM,
    sender: "@bob:x",
    content: {
      msgtype: "m.text",
      body: "> <@courier_fake_ann:x> question\n\nanswer",
      "m.relates_to": { "m.in_reply_to": { event_id: eventId } },
    },
  });
  await until("the answer", () => calls.sent.length === 1);
  expect(calls.sent[0]).toMatchObject({ text: "answer", replyToUser: ann });
});

test("a remote rank becomes the ghost's power level, written over the room's levels as they are", async () => {
  let levels: Record<string, unknown> = { users: { "@courier:x": 100 }, users_default: 0, events: { x: 50 } };
  const { host } = await start(true, (_room, type) => (type === "m.room.power_levels" ? levels : undefined));
  await host().report({ kind: "power", channelId: "c", user: ann, level: 50 });
  const request = await until("the power levels", () =>
    harness.sent.find((r) => r.path.includes("/state/m.room.power_levels/")),
  );
  expect(JSON.parse(request.body!)).toEqual({
    users: { "@courier:x": 100, "@courier_fake_ann:x": 50 },
    users_default: 0,
    events: { x: 50 },
  });
  // Already at that level: nothing is written.
  levels = JSON.parse(request.body!) as Record<string, unknown>;
  await host().report({ kind: "power", channelId: "c", user: ann, level: 50 });
  await host().report({ kind: "message", channelId: "c", sender: ann, text: "after" });
  await until("the next line", () => harness.sent.find((r) => r.body?.includes('"after"')));
  expect(harness.sent.filter((r) => r.path.includes("/state/m.room.power_levels/"))).toHaveLength(1);
});
