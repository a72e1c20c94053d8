// docs/bridges.md shows docs/examples/toyChat.ts (a toy TCP chat and its connector); this runs it
// both ways through the plugin harness: the toy server is real, on 127.0.0.1, a free port.
import { readFileSync } from "node:fs";
import { connect, type AddressInfo, type Server } from "node:net";
import { createInterface } from "node:readline";
import { pluginHarness, type PluginHarness } from "../../support/pluginHarness.ts";
import toy, { startToyChat } from "../../../docs/examples/toyChat.ts";

async function until<T>(what: string, check: () => T | undefined): Promise<T> {
  for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
    const value = check();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

let server: Server;
let harness: PluginHarness;
afterEach(async () => {
  await harness?.stop();
  server?.close();
});

test("the page shows the example file as it is", () => {
  const page = readFileSync(new URL("../../../docs/bridges.md", import.meta.url), "utf8");
  const code = readFileSync(new URL("../../../docs/examples/toyChat.ts", import.meta.url), "utf8");
  expect(page).toContain(code);
});

test("a toy chat line reaches the room from its ghost, and a Matrix message reaches the toy chat", async () => {
  server = await startToyChat();
  const port = (server.address() as AddressInfo).port;
  harness = await pluginHarness();
  const config = {
    port,
    portals: [{ channel: "lobby", room: "!r:x" }],
    remoteRate: { perSecond: 100, burst: 10 },
  };
  expect(await harness.host.load(toy, config)).toBe(true);
  await harness.host.start();

  const ann = connect(port, "127.0.0.1");
  const heard: string[] = [];
  createInterface({ input: ann }).on("line", (line) => heard.push(line));
  ann.write("NICK ann\nJOIN lobby\n");
  // The bridge joins on connect; say something until it has (the toy server keeps no history).
  const request = await until("the line in Matrix", () => {
    ann.write("SAY lobby hello matrix\n");
    return harness.sent.find((r) => r.path.includes("user_id=%40courier_toy_ann%3Ax"));
  });
  expect(request.path).toContain("/rooms/!r%3Ax/send/m.room.message/");
  expect(JSON.parse(request.body!)).toEqual({ msgtype: "m.text", body: "hello matrix" });

  await harness.dispatch({
    type: "m.room.message",
    room_id: "!r:x",
    sender: "@bob:x",
    content: { msgtype: "m.emote", body: "waves" },
  });
  expect(await until("the emote on the toy chat", () => heard.find((l) => l.includes("waves")))).toBe(
    "MSG lobby matrix <bob> * bob waves",
  );
  ann.destroy();
});
