// Encryption for ghosts (`encryption.ghosts`): a ghost invited into an encrypted room gets its
// own device (MSC4190) and keys on first use, shares its room key with the user's device, and
// what it says reaches the user's independent client (matrix-nio) decrypted.
import { EncryptedStack } from "./support/EncryptedStack.ts";
import { SERVER_NAME } from "./support/E2eStack.ts";
import { GHOST_LOCALPART } from "./support/ghostSayPlugin.ts";

const GHOST_PLUGIN = new URL("./support/ghostSayPlugin.ts", import.meta.url).pathname;

describe("encryption for ghosts", () => {
  let e2ee: EncryptedStack;

  beforeAll(async () => {
    e2ee = await EncryptedStack.start({
      encryption: { ghosts: true },
      config: { plugins: [{ name: "ghostsay", module: GHOST_PLUGIN }] },
    });
  }, 180_000);
  afterAll(async () => {
    await e2ee?.stop();
  }, 30_000);

  test("a ghost's message in an encrypted room is encrypted by its own device and decrypted by the user", async () => {
    const ghost = `@${GHOST_LOCALPART}:${SERVER_NAME}`;
    const roomId = await e2ee.roomWithBot();
    await e2ee.alice.sendText(roomId, "!ghostsay hello from a ghost");
    const [said] = await e2ee.alice.waitFor(roomId, {
      sender: ghost,
      decrypted: true,
      body: "hello from a ghost",
      timeoutMs: 30_000,
    });
    expect(said).toMatchObject({ type: "m.room.message", decrypted: true });
    const devices = await e2ee.alice.deviceKeys(ghost, { query: true });
    expect(Object.keys(devices.server ?? {})).toEqual(["COURIER"]);
  }, 90_000);
});
