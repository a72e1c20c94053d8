// Encryption for ghosts (`encryption.ghosts`): a ghost invited into an encrypted room gets its
// own device (MSC4190) and keys on first use, shares its room key with the user's device, and
// what it says reaches the user's independent client (matrix-nio) decrypted.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { E2eeClient } from "../support/E2eeClient.ts";
import { E2eStack, ENCRYPTION_REGISTRATION, SERVER_NAME, type CourierProcess } from "./support/E2eStack.ts";
import { GHOST_LOCALPART } from "./support/ghostSayPlugin.ts";

const GHOST_PLUGIN = new URL("./support/ghostSayPlugin.ts", import.meta.url).pathname;

describe("encryption for ghosts", () => {
  let stack: E2eStack;
  let courier: CourierProcess;
  let alice: E2eeClient;
  let storeDir: string;

  beforeAll(async () => {
    stack = await E2eStack.start({
      registration: ENCRYPTION_REGISTRATION,
      config: {
        encryption: { enabled: true, ghosts: true },
        plugins: [{ name: "ghostsay", module: GHOST_PLUGIN }],
      },
    });
    courier = await stack.startCourier();
    await courier.waitForLog(/"msg":"encryption ready"/, 30_000);
    const password = `pw-${randomBytes(8).toString("hex")}`;
    await stack.synapse.registerUser("alice", password, { admin: false });
    storeDir = mkdtempSync(path.join(tmpdir(), "courier-nio-ghosts-"));
    alice = await E2eeClient.start({
      homeserver: stack.synapse.baseUrl,
      userId: `@alice:${SERVER_NAME}`,
      password,
      storeDir,
    });
  }, 180_000);
  afterAll(async () => {
    await alice?.stop();
    await courier?.kill("SIGTERM");
    await stack?.stop();
    if (storeDir) rmSync(storeDir, { recursive: true, force: true });
  }, 30_000);

  test("a ghost's message in an encrypted room is encrypted by its own device and decrypted by the user", async () => {
    const ghost = `@${GHOST_LOCALPART}:${SERVER_NAME}`;
    const roomId = await alice.createRoom({ encrypted: true, invite: [stack.botUserId] });
    await alice.waitMember(roomId, stack.botUserId, "join", 30_000);
    await alice.sendText(roomId, "!ghostsay hello from a ghost");
    const [said] = await alice.waitFor(roomId, {
      sender: ghost,
      decrypted: true,
      body: "hello from a ghost",
      timeoutMs: 30_000,
    });
    expect(said).toMatchObject({ type: "m.room.message", decrypted: true });
    const devices = await alice.deviceKeys(ghost, { query: true });
    expect(Object.keys(devices.server ?? {})).toEqual(["COURIER"]);
  }, 90_000);
});
