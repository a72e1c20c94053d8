// Smoke test of the local Synapse used by the e2e tests: install, start, admin registration,
// room send + /messages, appservice token and ghost registration, restart with persisted data.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import yaml from "js-yaml";
import { LocalSynapse, ensureSynapseInstalled, findFreePort } from "../../scripts/synapse/LocalSynapse.ts";

// Cold install (no venv yet) is ~35-45 s; start-up a few seconds.
const INSTALL_AND_START_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 60_000;

interface Json {
  [key: string]: unknown;
}

async function call(
  synapse: LocalSynapse,
  method: string,
  urlPath: string,
  token: string,
  body?: unknown,
): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${synapse.baseUrl}${urlPath}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Json };
}

describe("LocalSynapse", () => {
  let tmp: string;
  let synapse: LocalSynapse | undefined;
  const asToken = randomBytes(24).toString("hex");
  const hsToken = randomBytes(24).toString("hex");
  const output: string[] = [];

  beforeAll(async () => {
    await ensureSynapseInstalled();
    tmp = mkdtempSync(path.join(tmpdir(), "courier-synapse-smoke-"));
    const registrationFile = path.join(tmp, "registration.yaml");
    writeFileSync(
      registrationFile,
      yaml.dump({
        id: "courier-smoke",
        // Nothing listens there: Synapse's pushes fail and back off, which this test ignores.
        url: `http://127.0.0.1:${await findFreePort()}`,
        as_token: asToken,
        hs_token: hsToken,
        sender_localpart: "courier",
        namespaces: {
          users: [{ exclusive: true, regex: "@ghost_.*:localhost" }],
          aliases: [],
          rooms: [],
        },
        rate_limited: false,
        receive_ephemeral: true,
        "de.sorunome.msc2409.push_ephemeral": true,
      }),
      { mode: 0o600 },
    );
    expect(statSync(registrationFile).mode & 0o777).toBe(0o600);
    const started = Date.now();
    synapse = await LocalSynapse.start({
      dataDir: path.join(tmp, "data"),
      registrationFiles: [registrationFile],
      log: (line) => output.push(line),
    });
    output.push(`[smoke] start took ${Date.now() - started} ms`);
  }, INSTALL_AND_START_TIMEOUT_MS);

  afterAll(async () => {
    await synapse?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 30_000);

  test(
    "serves users, rooms, appservice and survives a restart",
    async () => {
      const hs = synapse!;
      expect(hs.serverName).toBe("localhost");
      expect(hs.baseUrl).toBe(`http://127.0.0.1:${hs.port}`);

      const alice = await hs.registerUser("alice", "correct horse", { admin: true });
      expect(alice.userId).toBe("@alice:localhost");
      expect(alice.accessToken).toBeTruthy();
      expect(alice.deviceId).toBeTruthy();

      const created = await call(hs, "POST", "/_matrix/client/v3/createRoom", alice.accessToken, {
        preset: "private_chat",
        name: "smoke",
      });
      expect(created.status).toBe(200);
      const roomId = created.body.room_id as string;
      // Room version 12 (Synapse's default since 1.135) ids have no ":server" part: accept both.
      expect(roomId).toMatch(/^![^:]+(:localhost)?$/);

      const txnId = `smoke-${Date.now()}`;
      const sendPath = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txnId}`;
      const sent = await call(hs, "PUT", sendPath, alice.accessToken, {
        msgtype: "m.text",
        body: "hello from the smoke test",
      });
      expect(sent.status).toBe(200);
      const eventId = sent.body.event_id as string;
      expect(eventId).toMatch(/^\$/);

      const readMessages = async (): Promise<Json[]> => {
        const res = await call(
          hs,
          "GET",
          `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=20`,
          alice.accessToken,
        );
        expect(res.status).toBe(200);
        return res.body.chunk as Json[];
      };
      const message = (await readMessages()).find((e) => e.event_id === eventId);
      expect(message).toMatchObject({
        type: "m.room.message",
        sender: alice.userId,
        content: { msgtype: "m.text", body: "hello from the smoke test" },
      });

      // The appservice's as_token identifies its sender_localpart user.
      const whoami = await call(hs, "GET", "/_matrix/client/v3/account/whoami", asToken);
      expect(whoami).toMatchObject({ status: 200, body: { user_id: "@courier:localhost" } });

      // Ghost registration inside the exclusive namespace.
      const ghost = await call(hs, "POST", "/_matrix/client/v3/register", asToken, {
        type: "m.login.application_service",
        username: "ghost_1",
      });
      expect(ghost).toMatchObject({ status: 200, body: { user_id: "@ghost_1:localhost" } });
      const ghostWhoami = await call(
        hs,
        "GET",
        `/_matrix/client/v3/account/whoami?user_id=${encodeURIComponent("@ghost_1:localhost")}`,
        asToken,
      );
      expect(ghostWhoami).toMatchObject({ status: 200, body: { user_id: "@ghost_1:localhost" } });

      // Restart on the same data dir and port: users, rooms and events persisted.
      const port = hs.port;
      const restartStarted = Date.now();
      await hs.restart();
      output.push(`[smoke] restart took ${Date.now() - restartStarted} ms`);
      expect(hs.port).toBe(port);
      expect((await readMessages()).map((e) => e.event_id)).toContain(eventId);
      const again = await call(hs, "POST", "/_matrix/client/v3/register", asToken, {
        type: "m.login.application_service",
        username: "ghost_1",
      });
      expect(again).toMatchObject({ status: 400, body: { errcode: "M_USER_IN_USE" } });

      await hs.stop();
      expect(hs.running).toBe(false);
      await expect(fetch(`${hs.baseUrl}/_matrix/client/versions`)).rejects.toThrow();
      process.stderr.write(`${output.filter((l) => l.startsWith("[")).join("\n")}\n`);
    },
    TEST_TIMEOUT_MS,
  );
});
