// Cause keys survive an upgrade (DESIGN.md, invariant 9), proven with a crash: the framework is
// SIGKILLed after a handler's reply was journaled in the outbox but before the inbound event was
// marked done; it restarts on the same database with the plugin's handlers reordered and one
// added. The event is dispatched again, and its sends collapse onto the rows of the first run:
// the homeserver receives each reply exactly once. (With the registration index in the key, the
// replayed handlers would send under new txnIds: two of each.)
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FakeHomeserver } from "../support/FakeHomeserver.ts";
import { findFreePort } from "../support/dashboardStack.ts";
import type { CauseKeyChildOptions } from "../support/causeKeyCrashChild.ts";

const CHILD = fileURLToPath(new URL("../support/causeKeyCrashChild.ts", import.meta.url));
const SERVER = "fake.test";
const ROOM = `!upgrade:${SERVER}`;
const BOT = `@bot:${SERVER}`;
const AS_TOKEN = "as_token_cause_keys_0123456789";
const HS_TOKEN = "hs_token_cause_keys_0123456789";

interface Child {
  readonly child: ChildProcess;
  output(): string;
  /** Resolves with how the process ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when the child printed `line` (rejects if it exits first). */
  printed(line: string): Promise<void>;
}

function spawnChild(variant: "v1" | "v2", options: CauseKeyChildOptions): Child {
  const child = spawn(process.execPath, [CHILD, JSON.stringify(options)], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, COURIER_TEST_PLUGIN: variant, NODE_OPTIONS: "" },
  });
  let output = "";
  const waiting: Array<() => void> = [];
  const onData = (chunk: Buffer) => {
    output += chunk;
    for (const check of waiting.splice(0)) check();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    output: () => output,
    exited,
    printed: (line) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (output.split("\n").includes(line)) resolve();
          else waiting.push(check);
        };
        check();
        void exited.then(({ code, signal }) =>
          reject(new Error(`child exited (${code ?? signal}) before printing ${line}:\n${output}`)),
        );
      }),
  };
}

describe("cause keys across an upgrade, with a crash", () => {
  let hs: FakeHomeserver;
  let dir: string;
  let options: CauseKeyChildOptions;
  let running: Child | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "courier-causekeys-"));
    const port = await findFreePort();
    hs = await FakeHomeserver.start({
      asToken: AS_TOKEN,
      serverName: SERVER,
      appservice: { url: `http://127.0.0.1:${port}`, hsToken: HS_TOKEN, id: "courier" },
    });
    options = {
      db: join(dir, "courier.sqlite"),
      marker: join(dir, "killed"),
      homeserverUrl: hs.url,
      serverName: SERVER,
      port,
      asToken: AS_TOKEN,
      hsToken: HS_TOKEN,
    };
  });
  afterAll(async () => {
    if (running && running.child.exitCode === null && running.child.signalCode === null) {
      running.child.kill("SIGKILL");
      await running.exited;
    }
    await hs.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const botEvents = (type: string) => hs.roomEvents(ROOM).filter((e) => e.sender === BOT && e.type === type);

  test("killed after the reply was journaled; restarted with handlers reordered and one added: one reply each", async () => {
    const transaction = {
      events: [
        {
          event_id: "$ping-1",
          room_id: ROOM,
          sender: `@alice:${SERVER}`,
          type: "m.room.message",
          origin_server_ts: 1,
          content: { msgtype: "m.text", body: "!ping" },
        },
      ],
    };

    // First run, v1: `greet` replies, then the process kills itself before the event is done.
    running = spawnChild("v1", options);
    await running.printed("ready");
    // The answer may be lost with the process; Synapse would resend the transaction.
    await hs.pushTransaction("txn-1", transaction).catch(() => undefined);
    const first = await running.exited;
    expect({ ...first, output: running.output() }).toEqual({
      code: null,
      signal: "SIGKILL",
      output: expect.any(String),
    });
    expect(existsSync(options.marker)).toBe(true);

    // Second run, v2: the journaled but unfinished event is dispatched again, by new code.
    running = spawnChild("v2", options);
    await running.printed("ready");
    const resent = await hs.pushTransaction("txn-1", transaction); // Synapse's retry: journaled already
    expect(resent.status).toBe(200);
    // The new handler's reaction proves the event ran again under v2.
    await hs.waitFor(() => botEvents("m.reaction").length > 0, 15_000, "the new handler's reaction");
    running.child.kill("SIGTERM");
    await running.printed("stopped");
    expect((await running.exited).code).toBe(0);

    const replies = botEvents("m.room.message").map((e) => e.content.body);
    expect(replies.sort()).toEqual(["hello: !ping", "pong"]);
    expect(botEvents("m.reaction")).toHaveLength(1);
  }, 60_000);
});
