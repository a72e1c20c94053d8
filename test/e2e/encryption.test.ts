// End-to-end encryption against a real Synapse, with an independent E2EE client (matrix-nio,
// test/support/E2eeClient.ts): the bot decrypts what a user says in an encrypted room or DM and
// answers encrypted; its device keeps its identity and sessions across restarts.
import { runDoctor } from "../../src/ops/doctor/runDoctor.ts";
import { EncryptedStack } from "./support/EncryptedStack.ts";

describe("encryption with a real Synapse and matrix-nio", () => {
  let e2ee: EncryptedStack;

  beforeAll(async () => {
    e2ee = await EncryptedStack.start();
  }, 180_000);
  afterAll(async () => {
    await e2ee?.stop();
  }, 30_000);

  const echoed = (roomId: string, body: string) => e2ee.echo(roomId, body);

  test("!echo secret in an encrypted room: decrypted by the bot, answered encrypted", async () => {
    const { alice, stack } = e2ee;
    const roomId = await e2ee.roomWithBot();
    const [reply] = await echoed(roomId, "secret");
    expect(reply).toMatchObject({ type: "m.room.message", body: "secret", decrypted: true });
    // Synapse stored only ciphertext: read back over the Client-Server API, the reply is encrypted.
    const raw = await stack.call<{ chunk: Array<{ sender: string; type: string }> }>(
      alice.accessToken,
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=100`,
    );
    const fromBot = raw.chunk.filter((e) => e.sender === stack.botUserId && e.type !== "m.room.member");
    expect(fromBot.map((e) => e.type)).toEqual(["m.room.encrypted"]);
  }, 90_000);

  test("the same in a DM the client creates encrypted, as Element does", async () => {
    const roomId = await e2ee.roomWithBot({ isDirect: true });
    const [reply] = await echoed(roomId, "direct secret");
    expect(reply).toMatchObject({ body: "direct secret", decrypted: true });
  }, 90_000);

  test("metrics show the bot's device loaded and nothing waiting for a key", async () => {
    const metrics = await fetch(`http://127.0.0.1:${e2ee.stack.appservicePort}/metrics`).then((r) =>
      r.text(),
    );
    expect(metrics).toMatch(/^courier_crypto_devices 1$/m);
    expect(metrics).toMatch(/^courier_crypto_parked_events 0$/m);
  });

  test("courier doctor finds the bot's device publishing its keys", async () => {
    const results = await runDoctor(e2ee.stack.configPath, { env: {} });
    expect(results.find((r) => r.name === "encryption")).toMatchObject({
      status: "pass",
      detail: expect.stringContaining(`${e2ee.stack.botUserId} device COURIER publishes ed25519`),
    });
  }, 60_000);

  test("after a restart the bot's device is the same and answers in the old session's room", async () => {
    const { alice, stack } = e2ee;
    const before = await alice.deviceKeys(stack.botUserId, { query: true });
    const roomId = await e2ee.roomWithBot();
    await echoed(roomId, "before restart");
    await e2ee.restartCourier();
    const after = await alice.deviceKeys(stack.botUserId, { query: true });
    expect(after.server).toEqual(before.server);
    // alice's session did not change: the restored device decrypts it with the key it had.
    const [reply] = await echoed(roomId, "after restart");
    expect(reply).toMatchObject({ body: "after restart", decrypted: true });
    const keys = await alice.roomKeyStats();
    expect(keys.filter((k) => k.count > 1)).toEqual([]);
  }, 120_000);
});
