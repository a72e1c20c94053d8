// What the pinned Synapse offers an appservice for end-to-end encryption, as
// docs/encryption.md ("Synapse settings") describes it: MSC4190 device creation, MSC3202 device masquerading
// for keys/upload, keys/query and sendToDevice, and in its transactions MSC2409/MSC4203 to-device
// messages and MSC3202 one-time key counts, fallback key types and device list changes. Raw HTTP,
// no framework: a Synapse upgrade that changes any of it fails here first.
import { createServer, type Server } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { LocalSynapse, ensureSynapseInstalled, findFreePort } from "../../scripts/synapse/LocalSynapse.ts";

const SETUP_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 60_000;
const AS_TOKEN = "as-token-e2ee-endpoints";
const BOT = "@bot_1:localhost";
const DEVICE = "BOTDEV";

type Json = Record<string, unknown>;

describe("Synapse appservice E2EE endpoints and transactions", () => {
  let tmp: string;
  let synapse: LocalSynapse | undefined;
  let server: Server | undefined;
  const transactions: Json[] = [];

  beforeAll(async () => {
    await ensureSynapseInstalled();
    tmp = mkdtempSync(path.join(tmpdir(), "courier-as-e2ee-"));
    const port = await findFreePort();
    server = createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => (body += chunk));
      req.on("end", () => {
        if (req.url?.includes("/transactions/")) transactions.push(JSON.parse(body) as Json);
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => server!.listen(port, "127.0.0.1", resolve));
    const registration = path.join(tmp, "registration.yaml");
    writeFileSync(
      registration,
      JSON.stringify({
        id: "e2ee-endpoints",
        url: `http://127.0.0.1:${port}`,
        as_token: AS_TOKEN,
        hs_token: "hs-token-e2ee-endpoints",
        sender_localpart: "courier",
        namespaces: { users: [{ exclusive: true, regex: "@bot_.*:localhost" }], aliases: [], rooms: [] },
        rate_limited: false,
        receive_ephemeral: true,
        "org.matrix.msc3202": true,
        "io.element.msc4190": true,
      }),
      { mode: 0o600 },
    );
    synapse = await LocalSynapse.start({
      dataDir: path.join(tmp, "synapse"),
      registrationFiles: [registration],
    });
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await synapse?.stop();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 30_000);

  const call = async (method: string, urlPath: string, token: string, body?: unknown) => {
    const res = await fetch(`${synapse!.baseUrl}${urlPath}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Json };
  };
  const asBot = (device?: string): string =>
    `user_id=${encodeURIComponent(BOT)}${device === undefined ? "" : `&device_id=${device}`}`;
  /** Waits for a transaction field to satisfy `predicate`; returns that field's value. */
  const waitForTransaction = async (
    field: string,
    predicate: (value: unknown) => boolean,
  ): Promise<unknown> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const found = transactions.find((t) => field in t && predicate(t[field]));
      if (found) return found[field];
      if (Date.now() > deadline) {
        throw new Error(`no transaction with a matching ${field}: ${JSON.stringify(transactions)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  test(
    "device creation, masqueraded key upload and to-device, MSC3202/MSC2409 transaction fields",
    async () => {
      // MSC4190: registration without a token, no appservice login, devices by PUT. Synapse
      // checks inhibit_login only after registering the user: the 400 leaves bot_0 registered.
      const register = (username: string, inhibitLogin?: boolean) =>
        call("POST", "/_matrix/client/v3/register", AS_TOKEN, {
          type: "m.login.application_service",
          username,
          ...(inhibitLogin === undefined ? {} : { inhibit_login: inhibitLogin }),
        });
      expect(await register("bot_0")).toMatchObject({
        status: 400,
        body: { errcode: "M_APPSERVICE_LOGIN_UNSUPPORTED" },
      });
      expect(await register("bot_0", true)).toMatchObject({
        status: 400,
        body: { errcode: "M_USER_IN_USE" },
      });
      const registered = await register("bot_1", true);
      expect(registered).toMatchObject({ status: 200, body: { user_id: BOT } });
      expect(registered.body.access_token).toBeUndefined();
      expect(
        await call("POST", "/_matrix/client/v3/login", AS_TOKEN, {
          type: "m.login.application_service",
          identifier: { type: "m.id.user", user: "bot_1" },
        }),
      ).toMatchObject({ status: 400, body: { errcode: "M_APPSERVICE_LOGIN_UNSUPPORTED" } });
      expect(
        (await call("PUT", `/_matrix/client/v3/devices/${DEVICE}?${asBot()}`, AS_TOKEN, {})).status,
      ).toBe(201);
      expect(
        (await call("PUT", `/_matrix/client/v3/devices/${DEVICE}?${asBot()}`, AS_TOKEN, {})).status,
      ).toBe(200);

      // MSC3202 masquerading: an unknown device is refused, keys need the device.
      expect(
        await call("POST", `/_matrix/client/v3/keys/upload?${asBot("NOPE")}`, AS_TOKEN, {}),
      ).toMatchObject({
        status: 400,
        body: { errcode: "M_UNKNOWN_DEVICE" },
      });
      expect((await call("POST", `/_matrix/client/v3/keys/upload?${asBot()}`, AS_TOKEN, {})).status).toBe(
        400,
      );
      const signatures = { [BOT]: { [`ed25519:${DEVICE}`]: "s".repeat(86) } };
      const uploaded = await call("POST", `/_matrix/client/v3/keys/upload?${asBot(DEVICE)}`, AS_TOKEN, {
        device_keys: {
          user_id: BOT,
          device_id: DEVICE,
          algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
          keys: { [`curve25519:${DEVICE}`]: "c".repeat(43), [`ed25519:${DEVICE}`]: "e".repeat(43) },
          signatures,
        },
        one_time_keys: { "signed_curve25519:AAAAAQ": { key: "k".repeat(43), signatures } },
        fallback_keys: { "signed_curve25519:AAAAAg": { key: "f".repeat(43), fallback: true, signatures } },
      });
      expect(uploaded).toMatchObject({
        status: 200,
        body: { one_time_key_counts: { signed_curve25519: 1 } },
      });

      const alice = await synapse!.registerUser("alice", "pw");
      const queried = await call("POST", "/_matrix/client/v3/keys/query", alice.accessToken, {
        device_keys: { [BOT]: [] },
      });
      expect(queried.body).toMatchObject({ device_keys: { [BOT]: { [DEVICE]: { device_id: DEVICE } } } });
      expect(
        await waitForTransaction("org.matrix.msc3202.device_lists", (v) =>
          ((v as { changed: string[] }).changed ?? []).includes(BOT),
        ),
      ).toEqual({ changed: [BOT], left: [] });

      // Key counts ride along only in a transaction that concerns the ghost (an event in one of
      // its rooms, a to-device message for it), not on their own: the ghost joins a room.
      const room = await call("POST", "/_matrix/client/v3/createRoom", alice.accessToken, { invite: [BOT] });
      const roomId = room.body.room_id as string;
      expect(
        (await call("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}?${asBot()}`, AS_TOKEN, {}))
          .status,
      ).toBe(200);
      const counts = (v: unknown) =>
        (v as Record<string, Record<string, Record<string, number>>>)[BOT]?.[DEVICE];
      expect(
        await waitForTransaction(
          "org.matrix.msc3202.device_one_time_key_counts",
          (v) => counts(v) !== undefined,
        ),
      ).toEqual({ [BOT]: { [DEVICE]: { signed_curve25519: 1 } } });
      expect(
        await waitForTransaction("org.matrix.msc3202.device_unused_fallback_key_types", () => true),
      ).toEqual({
        [BOT]: { [DEVICE]: ["signed_curve25519"] },
      });

      const claim = () =>
        call("POST", "/_matrix/client/v3/keys/claim", alice.accessToken, {
          one_time_keys: { [BOT]: { [DEVICE]: "signed_curve25519" } },
        });
      expect((await claim()).body).toMatchObject({
        one_time_keys: { [BOT]: { [DEVICE]: { "signed_curve25519:AAAAAQ": { key: "k".repeat(43) } } } },
      });
      expect((await claim()).body).toMatchObject({
        one_time_keys: {
          [BOT]: { [DEVICE]: { "signed_curve25519:AAAAAg": { key: "f".repeat(43), fallback: true } } },
        },
      });

      // To-device both ways: pushed to the appservice with the recipient device; sent as the ghost.
      const content = { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: "x", ciphertext: {} };
      expect(
        (
          await call("PUT", "/_matrix/client/v3/sendToDevice/m.room.encrypted/t1", alice.accessToken, {
            messages: { [BOT]: { [DEVICE]: content } },
          })
        ).status,
      ).toBe(200);
      const pushed = (await waitForTransaction(
        "de.sorunome.msc2409.to_device",
        (v) => (v as unknown[]).length > 0,
      )) as Json[];
      expect(pushed).toEqual([
        { type: "m.room.encrypted", sender: alice.userId, to_user_id: BOT, to_device_id: DEVICE, content },
      ]);
      // That transaction's counts: none left (an absent algorithm, not 0), the fallback key used.
      const withToDevice = transactions.find(
        (t) => (t["de.sorunome.msc2409.to_device"] as unknown[]).length > 0,
      )!;
      expect(withToDevice["org.matrix.msc3202.device_one_time_key_counts"]).toEqual({
        [BOT]: { [DEVICE]: {} },
      });
      expect(withToDevice["org.matrix.msc3202.device_unused_fallback_key_types"]).toEqual({
        [BOT]: { [DEVICE]: [] },
      });
      expect(
        (
          await call(
            "PUT",
            `/_matrix/client/v3/sendToDevice/m.room.encrypted/t2?${asBot(DEVICE)}`,
            AS_TOKEN,
            {
              messages: { [alice.userId]: { [alice.deviceId]: content } },
            },
          )
        ).status,
      ).toBe(200);
      const sync = await call("GET", "/_matrix/client/v3/sync?timeout=0", alice.accessToken);
      expect((sync.body.to_device as { events: Json[] }).events).toEqual([
        { type: "m.room.encrypted", sender: BOT, content },
      ]);
    },
    TEST_TIMEOUT_MS,
  );
});
