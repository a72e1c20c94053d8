// Smoke test of the independent E2EE test client (test/support/E2eeClient.ts, matrix-nio with
// vodozemac) against a real Synapse: two users exchange encrypted messages in a room and in a DM,
// each decrypting the other's; room keys arrive once per session; identity keys are visible.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { LocalSynapse, ensureSynapseInstalled } from "../../scripts/synapse/LocalSynapse.ts";
import { E2eeClient } from "../support/E2eeClient.ts";

// Cold Synapse install is ~20-45 s; start-up a few seconds.
const SETUP_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 60_000;
const WAIT_MS = 20_000;
const PASSWORD = "correct horse battery staple";

describe("E2eeClient (matrix-nio)", () => {
  let tmp: string;
  let synapse: LocalSynapse | undefined;
  const clients: E2eeClient[] = [];
  const output: string[] = [];

  const login = async (localpart: string): Promise<E2eeClient> => {
    const hs = synapse!;
    const user = await hs.registerUser(localpart, PASSWORD);
    const client = await E2eeClient.start({
      homeserver: hs.baseUrl,
      userId: user.userId,
      password: PASSWORD,
      storeDir: path.join(tmp, `store-${localpart}`),
      log: (line) => output.push(`[${localpart}] ${line}`),
    });
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    await ensureSynapseInstalled();
    tmp = mkdtempSync(path.join(tmpdir(), "courier-e2ee-smoke-"));
    synapse = await LocalSynapse.start({
      dataDir: path.join(tmp, "synapse"),
      registrationFiles: [],
      log: (line) => output.push(line),
    });
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.stop()));
    await synapse?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 30_000);

  /** Runs a test body; on failure prints nio's and Synapse's warnings first (only then worth reading). */
  const withOutput = (body: () => Promise<void>) => async (): Promise<void> => {
    try {
      await body();
    } catch (err) {
      process.stderr.write(`${output.slice(-60).join("\n")}\n`);
      throw err;
    }
  };

  test(
    "two users exchange encrypted messages in a room and in a DM",
    withOutput(async () => {
      const started = Date.now();
      const [alice, bob] = await Promise.all([login("alice"), login("bob")]);
      expect(alice.userId).toBe("@alice:localhost");
      expect(alice.deviceId).toBeTruthy();
      expect(alice.identityKeys.ed25519).toMatch(/^[A-Za-z0-9+/]{43}$/);

      const exchange = async (roomId: string): Promise<void> => {
        await bob.join(roomId);
        await alice.waitMember(roomId, bob.userId);
        const secretId = await alice.sendText(roomId, "secret");
        const [seen] = await bob.waitFor(roomId, {
          sender: alice.userId,
          decrypted: true,
          timeoutMs: WAIT_MS,
        });
        expect(seen).toMatchObject({
          eventId: secretId,
          sender: alice.userId,
          type: "m.room.message",
          body: "secret",
          decrypted: true,
          undecryptable: false,
        });
        expect(seen!.sessionId).toBeTruthy();

        const replyId = await bob.sendText(roomId, "got it");
        const [reply] = await alice.waitFor(roomId, {
          sender: bob.userId,
          decrypted: true,
          timeoutMs: WAIT_MS,
        });
        expect(reply).toMatchObject({
          eventId: replyId,
          body: "got it",
          decrypted: true,
          undecryptable: false,
        });

        // The timeline has the room's state events too, in order; the messages are encrypted.
        const bobsView = await bob.messages(roomId);
        expect(bobsView.map((e) => e.eventId)).toEqual(expect.arrayContaining([secretId, replyId]));
        expect(bobsView.findIndex((e) => e.eventId === secretId)).toBeLessThan(
          bobsView.findIndex((e) => e.eventId === replyId),
        );
        expect(bobsView.filter((e) => e.undecryptable)).toEqual([]);
      };

      const roomId = await alice.createRoom({ name: "smoke", encrypted: true, invite: [bob.userId] });
      await exchange(roomId);

      const dmId = await alice.createRoom({ encrypted: true, invite: [bob.userId], isDirect: true });
      expect(dmId).not.toBe(roomId);
      await exchange(dmId);

      // One m.room_key per (sender, session) so far: nobody shared a session twice.
      const bobKeys = await bob.roomKeyStats();
      const fromAlice = bobKeys.filter((k) => k.sender === alice.userId);
      expect(new Set(fromAlice.map((k) => k.roomId))).toEqual(new Set([roomId, dmId]));
      for (const key of bobKeys) expect(key.count).toBe(1);

      // Each sees the other's device with the identity keys that device reports for itself.
      const aliceDevices = await bob.deviceKeys(alice.userId);
      expect(aliceDevices.devices).toContainEqual(
        expect.objectContaining({ deviceId: alice.deviceId, ...alice.identityKeys }),
      );
      expect(aliceDevices.server?.[alice.deviceId]).toEqual(alice.identityKeys);
      output.push(`[smoke] logins + room + DM exchanges took ${Date.now() - started} ms`);

      // A late joiner sees the earlier message (shared history) but has no key for it: recorded
      // as undecryptable, and it stays so; what is sent after the join it decrypts.
      const charlie = await login("charlie");
      await alice.invite(roomId, charlie.userId);
      await charlie.join(roomId);
      await alice.waitMember(roomId, charlie.userId);
      const [early] = await charlie.waitFor(roomId, { types: ["m.room.encrypted"], timeoutMs: WAIT_MS });
      expect(early).toMatchObject({
        sender: alice.userId,
        type: "m.room.encrypted",
        body: null,
        decrypted: false,
        undecryptable: true,
        wasUndecryptable: true,
      });
      expect(early!.sessionId).toBeTruthy();
      await alice.sendText(roomId, "welcome charlie");
      await charlie.waitFor(roomId, { body: "welcome charlie", decrypted: true, timeoutMs: WAIT_MS });
      expect((await charlie.messages(roomId)).find((e) => e.eventId === early!.eventId)?.undecryptable).toBe(
        true,
      );

      // A restart on the same store and device id keeps the identity and the olm sessions.
      await bob.stop();
      clients.splice(clients.indexOf(bob), 1);
      const bobAgain = await E2eeClient.start({
        homeserver: synapse!.baseUrl,
        userId: bob.userId,
        password: PASSWORD,
        storeDir: path.join(tmp, "store-bob"),
        deviceId: bob.deviceId,
        log: (line) => output.push(`[bob2] ${line}`),
      });
      clients.push(bobAgain);
      expect(bobAgain.deviceId).toBe(bob.deviceId);
      expect(bobAgain.identityKeys).toEqual(bob.identityKeys);
      const afterId = await alice.sendText(roomId, "after restart");
      const [after] = await bobAgain.waitFor(roomId, {
        body: "after restart",
        decrypted: true,
        timeoutMs: WAIT_MS,
      });
      expect(after).toMatchObject({ eventId: afterId, sender: alice.userId, decrypted: true });
      expect((await alice.deviceKeys(bob.userId)).server?.[bob.deviceId]).toEqual(bob.identityKeys);
      process.stderr.write(`${output.filter((l) => l.startsWith("[smoke]")).join("\n")}\n`);
    }),
    TEST_TIMEOUT_MS,
  );
});
