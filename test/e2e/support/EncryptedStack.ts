// The stack of the encryption tests: Synapse with the registration encryption needs, the
// framework with `encryption.enabled`, and a user, alice, on an independent E2EE client
// (matrix-nio, test/support/E2eeClient.ts).
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { E2eeClient } from "../../support/E2eeClient.ts";
import { E2eStack, ENCRYPTION_REGISTRATION, SERVER_NAME, type CourierProcess } from "./E2eStack.ts";

export class EncryptedStack {
  readonly stack: E2eStack;
  /** The running framework; a test that restarts it sets the new one here. */
  courier: CourierProcess;
  readonly alice: E2eeClient;
  readonly #storeDir: string;

  private constructor(stack: E2eStack, courier: CourierProcess, alice: E2eeClient, storeDir: string) {
    this.stack = stack;
    this.courier = courier;
    this.alice = alice;
    this.#storeDir = storeDir;
  }

  /** `encryption` and `config` are merged into the framework's config. */
  static async start(
    options: { encryption?: Record<string, unknown>; config?: Record<string, unknown> } = {},
  ): Promise<EncryptedStack> {
    const stack = await E2eStack.start({
      registration: ENCRYPTION_REGISTRATION,
      config: { ...options.config, encryption: { enabled: true, ...options.encryption } },
    });
    const courier = await stack.startCourier();
    await courier.waitForLog(/"msg":"encryption ready"/, 30_000);
    const password = `pw-${randomBytes(8).toString("hex")}`;
    await stack.synapse.registerUser("alice", password, { admin: false });
    const storeDir = mkdtempSync(path.join(tmpdir(), "courier-nio-"));
    const alice = await E2eeClient.start({
      homeserver: stack.synapse.baseUrl,
      userId: `@alice:${SERVER_NAME}`,
      password,
      storeDir,
    });
    return new EncryptedStack(stack, courier, alice, storeDir);
  }

  /** Kills the framework with SIGKILL and starts it again on the same stores. */
  async restartCourier(): Promise<CourierProcess> {
    await this.courier.kill("SIGKILL");
    this.courier = await this.stack.startCourier();
    await this.courier.waitForLog(/"msg":"encryption ready"/, 30_000);
    return this.courier;
  }

  /** An encrypted room alice made with the bot in it, once the bot has joined. */
  async roomWithBot(options: { isDirect?: boolean } = {}): Promise<string> {
    const roomId = await this.alice.createRoom({
      encrypted: true,
      isDirect: options.isDirect ?? false,
      invite: [this.stack.botUserId],
    });
    await this.alice.waitMember(roomId, this.stack.botUserId, "join", 30_000);
    return roomId;
  }

  /** alice says `!echo <body>` in the room; resolves with the bot's reply once she decrypted it. */
  async echo(roomId: string, body: string) {
    await this.alice.sendText(roomId, `!echo ${body}`);
    return this.alice.waitFor(roomId, {
      sender: this.stack.botUserId,
      decrypted: true,
      body,
      timeoutMs: 30_000,
    });
  }

  async stop(): Promise<void> {
    await this.alice.stop();
    await this.courier.kill("SIGTERM");
    await this.stack.stop();
    rmSync(this.#storeDir, { recursive: true, force: true });
  }
}
