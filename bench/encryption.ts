// Encryption's cost per message and memory per device, in one process, against an in-memory
// key server (no homeserver: the figures are the crypto's, not the network's).
//
// - encrypt: `CryptoDevice.encrypt` (the framework's whole sequence: tracked users, pending
//   requests, missing sessions, share, encrypt, under the device's lock), against the sdk's bare
//   `encryptRoomEvent` on an already shared session as the baseline, in the same run.
// - decrypt: `CryptoDevice.decrypt` of the user's messages, against the sdk's bare
//   `decryptRoomEvent` on another machine holding the same session.
// - memory: RSS growth per loaded device (its machine, its stored state in fake-indexeddb).
import "fake-indexeddb/auto";
import {
  DecryptionSettings,
  DeviceLists,
  EncryptionSettings,
  RoomId,
  TrustRequirement,
  UserId,
} from "@matrix-org/matrix-sdk-crypto-wasm";
import type { CryptoDevice, DeviceToDevice } from "../src/crypto/CryptoDevice.ts";
import type { RoomId as OurRoomId } from "../src/ids.ts";
import { MatrixClient } from "../src/matrix/MatrixClient.ts";
import { KeyServer, memoryDevice, serveKeyRequests, userMachine } from "../test/support/KeyServer.ts";
import { percentile, report, round, rssMb } from "./support.ts";

const MESSAGES = Number(process.env.BENCH_CRYPTO_MESSAGES ?? 2000);
const DEVICES = Number(process.env.BENCH_CRYPTO_DEVICES ?? 20);
const ROOM = "!bench:x" as OurRoomId;

const keys = await KeyServer.start();
const client = new MatrixClient({ homeserverUrl: keys.url, accessToken: "bench" });

const device = (user: string, journaled: DeviceToDevice[]) => memoryDevice(client, user, journaled);

/** Runs `one` n times; the per-call milliseconds. */
async function timed(n: number, one: (i: number) => Promise<unknown>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    await one(i);
    times.push(performance.now() - started);
  }
  return times;
}

const summary = (times: number[]) => {
  const total = times.reduce((a, b) => a + b, 0);
  return {
    ops_per_s: round((times.length / total) * 1000, 0),
    p50_ms: round(percentile(times, 50), 3),
    p99_ms: round(percentile(times, 99), 3),
  };
};

// The bot's device and a user; the first encrypt shares the room key.
const journaled: DeviceToDevice[] = [];
const bot = await device("@bot:x", journaled);
const alice = await userMachine(keys, "@alice:x", "ALICE");
const settings = { rotationPeriodMsgs: MESSAGES * 10 };
const content = { msgtype: "m.text", body: "a message of a usual length, some fifty characters" };
const first = await bot.encrypt(ROOM, ["@alice:x"], settings, "m.room.message", content);
const toAlice = journaled.splice(0).map((r) => ({
  sender: "@bot:x",
  type: r.eventType,
  content: r.messages["@alice:x"]!.ALICE,
}));
await alice.receiveSyncChanges(JSON.stringify(toAlice), new DeviceLists(), new Map(), new Set());

// Baseline: the bare sdk, a second machine of the same kind with its own shared session.
const bare = await userMachine(keys, "@carol:x", "CAROL");
await bare.updateTrackedUsers([new UserId("@alice:x")]);
const claim = await bare.getMissingSessions([new UserId("@alice:x")]);
if (claim?.id)
  await bare.markRequestAsSent(
    claim.id,
    claim.type,
    JSON.stringify(keys.handle("keys/claim", claim.body, "@carol:x\u0000CAROL")),
  );
// A session that outlives the run: the bare sdk panics ("Session expired") on an encrypt past
// its rotation, the very trap CryptoDevice's share-first sequence exists for.
const bareSettings = new EncryptionSettings();
bareSettings.rotationPeriodMessages = BigInt(MESSAGES * 10);
for (const r of await bare.shareRoomKey(new RoomId(ROOM), [new UserId("@alice:x")], bareSettings))
  await bare.markRequestAsSent(r.id, r.type, "{}");

const baselineEncrypt = summary(
  await timed(MESSAGES, () =>
    bare.encryptRoomEvent(new RoomId(ROOM), "m.room.message", JSON.stringify(content)),
  ),
);
const sealed: Record<string, unknown>[] = [first];
const encrypt = summary(
  await timed(MESSAGES, async () =>
    sealed.push(await bot.encrypt(ROOM, ["@alice:x"], settings, "m.room.message", content)),
  ),
);
report({
  name: "encrypt",
  ...encrypt,
  rss_mb: rssMb(),
  baseline: { name: "sdk encryptRoomEvent", ...baselineEncrypt },
});

// Decrypt: the user's messages to the bot. Alice shares her room key with the bot's device
// (to-device, fed through CryptoDevice.receive as a transaction's would be).
await alice.updateTrackedUsers([new UserId("@bot:x")]);
await serveKeyRequests(keys, alice, "@alice:x\u0000ALICE");
const aliceClaim = await alice.getMissingSessions([new UserId("@bot:x")]);
if (aliceClaim?.id)
  await alice.markRequestAsSent(
    aliceClaim.id,
    aliceClaim.type,
    JSON.stringify(keys.handle("keys/claim", aliceClaim.body, "@alice:x\u0000ALICE")),
  );
const aliceSettings = new EncryptionSettings();
aliceSettings.rotationPeriodMessages = BigInt(MESSAGES * 10);
for (const r of await alice.shareRoomKey(new RoomId(ROOM), [new UserId("@bot:x")], aliceSettings)) {
  const messages = (JSON.parse(r.body) as { messages: Record<string, Record<string, object>> }).messages;
  await bot.receive({
    toDevice: [{ sender: "@alice:x", type: r.event_type, content: messages["@bot:x"]!.COURIER }],
  });
  await alice.markRequestAsSent(r.id, r.type, "{}");
}
const fromAlice: Record<string, unknown>[] = [];
for (let i = 0; i < MESSAGES; i++) {
  const sealedByAlice = await alice.encryptRoomEvent(
    new RoomId(ROOM),
    "m.room.message",
    JSON.stringify(content),
  );
  fromAlice.push({
    type: "m.room.encrypted",
    event_id: `$a${i}`,
    room_id: ROOM,
    sender: "@alice:x",
    origin_server_ts: Date.now(),
    content: JSON.parse(sealedByAlice) as object,
  });
}
// Baseline: the bare sdk decrypting the bot's messages of the same size on alice's machine.
const fromBot = sealed.map((c, i) =>
  JSON.stringify({
    type: "m.room.encrypted",
    event_id: `$b${i}`,
    room_id: ROOM,
    sender: "@bot:x",
    origin_server_ts: 1,
    content: c,
  }),
);
const baselineDecrypt = summary(
  await timed(MESSAGES, (i) =>
    alice.decryptRoomEvent(fromBot[i]!, new RoomId(ROOM), new DecryptionSettings(TrustRequirement.Untrusted)),
  ),
);
let failures = 0;
const decrypt = summary(
  await timed(MESSAGES, async (i) => {
    if (!(await bot.decrypt(fromAlice[i]!)).ok) failures++;
  }),
);
if (failures > 0) throw new Error(`${failures} of the user's messages did not decrypt`);
report({
  name: "decrypt",
  ...decrypt,
  rss_mb: rssMb(),
  baseline: { name: "sdk decryptRoomEvent", ...baselineDecrypt },
});

// Memory per device.
globalThis.gc?.();
const before = process.memoryUsage.rss();
const devices: CryptoDevice[] = [];
for (let i = 0; i < DEVICES; i++) devices.push(await device(`@ghost${i}:x`, []));
globalThis.gc?.();
const perDeviceMb = (process.memoryUsage.rss() - before) / 2 ** 20 / DEVICES;
report({
  name: "memory-per-device",
  ops_per_s: 0,
  p50_ms: 0,
  p99_ms: 0,
  rss_mb: rssMb(),
  per_device_mb: round(perDeviceMb, 2),
  devices: DEVICES,
  baseline: null,
});
for (const d of [...devices, bot]) d.close();
await client.close();
await keys.stop();
