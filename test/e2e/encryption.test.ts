// End-to-end encryption against a real Synapse, with an independent E2EE client (matrix-nio,
// test/support/E2eeClient.ts): the bot decrypts what a user says in an encrypted room or DM and
// answers encrypted; its device keeps its identity and sessions across restarts.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { runDoctor } from "../../src/ops/doctor/runDoctor.ts";
import { E2eeClient } from "../support/E2eeClient.ts";
import { E2eStack, ENCRYPTION_REGISTRATION, SERVER_NAME, type CourierProcess } from "./support/E2eStack.ts";

describe("encryption with a real Synapse and matrix-nio", () => {
  let stack: E2eStack;
  let courier: CourierProcess;
  let alice: E2eeClient;
  let storeDir: string;

  beforeAll(async () => {
    stack = await E2eStack.start({
      registration: ENCRYPTION_REGISTRATION,
      config: { encryption: { enabled: true }, logging: { level: "debug" } },
    });
    courier = await stack.startCourier();
    await courier.waitForLog(/"msg":"encryption ready"/, 30_000);
    const password = `pw-${randomBytes(8).toString("hex")}`;
    await stack.synapse.registerUser("alice", password, { admin: false });
    storeDir = mkdtempSync(path.join(tmpdir(), "courier-nio-"));
    alice = await E2eeClient.start({
      homeserver: stack.synapse.baseUrl,
      userId: `@alice:${SERVER_NAME}`,
      password,
      storeDir,
    });
  }, 180_000);
  afterAll(async () => {
    if (process.env.E2EE_DEBUG) writeFileSync(process.env.E2EE_DEBUG, courier?.lines.join("\n") ?? "");
    await alice?.stop();
    await courier?.kill("SIGTERM");
    await stack?.stop();
    if (storeDir) rmSync(storeDir, { recursive: true, force: true });
  }, 30_000);

  const echoed = async (roomId: string, body: string) => {
    await alice.waitMember(roomId, stack.botUserId, "join", 30_000);
    await alice.sendText(roomId, `!echo ${body}`);
    return alice.waitFor(roomId, { sender: stack.botUserId, decrypted: true, body, timeoutMs: 30_000 });
  };

  test("!echo secret in an encrypted room: decrypted by the bot, answered encrypted", async () => {
    const roomId = await alice.createRoom({ encrypted: true, invite: [stack.botUserId] });
    const [reply] = await echoed(roomId, "secret");
    expect(reply).toMatchObject({ type: "m.room.message", body: "secret", decrypted: true });
    // Synapse stored only ciphertext: read back over the Client-Server API, the reply is encrypted.
    const raw = await stack.call<{ chunk: Array<{ sender: string; type: string }> }>(
      alice.accessToken,
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=100`,
    );
    const fromBot = raw.chunk.filter(
      (e) => e.sender === stack.botUserId && e.type.startsWith("m.room.") && !e.type.includes("member"),
    );
    expect(fromBot.map((e) => e.type)).toEqual(["m.room.encrypted"]);
  }, 90_000);

  test("the same in a DM the client creates encrypted, as Element does", async () => {
    const roomId = await alice.createRoom({ encrypted: true, isDirect: true, invite: [stack.botUserId] });
    const [reply] = await echoed(roomId, "direct secret");
    expect(reply).toMatchObject({ body: "direct secret", decrypted: true });
  }, 90_000);

  test("metrics show the bot's device loaded and nothing waiting for a key", async () => {
    const metrics = await fetch(`http://127.0.0.1:${stack.appservicePort}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/^courier_crypto_devices 1$/m);
    expect(metrics).toMatch(/^courier_crypto_parked_events 0$/m);
  });

  test("courier doctor finds the bot's device publishing its keys", async () => {
    const results = await runDoctor(stack.configPath, { env: {} });
    expect(results.find((r) => r.name === "encryption")).toMatchObject({
      status: "pass",
      detail: expect.stringContaining(`${stack.botUserId} device COURIER publishes ed25519`),
    });
  }, 60_000);

  test("after a restart the bot's device is the same and answers in the old session's room", async () => {
    const before = await alice.deviceKeys(stack.botUserId, { query: true });
    const roomId = await alice.createRoom({ encrypted: true, invite: [stack.botUserId] });
    await echoed(roomId, "before restart");
    await courier.kill("SIGKILL");
    courier = await stack.startCourier();
    await courier.waitForLog(/"msg":"encryption ready"/, 30_000);
    const after = await alice.deviceKeys(stack.botUserId, { query: true });
    expect(after.server).toEqual(before.server);
    const [reply] = await echoed(roomId, "after restart");
    expect(reply).toMatchObject({ body: "after restart", decrypted: true });
    const keys = await alice.roomKeyStats();
    expect(keys.filter((k) => k.count > 1)).toEqual([]);
  }, 120_000);
});
