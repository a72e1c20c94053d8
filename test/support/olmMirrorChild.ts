// Child process for the IdbMirror integration test with the real OlmMachine. argv: mode, file,
// then per mode:
//   first  ROOMS       two machines (@bot:x DEV, @peer:x PEER) in one process, each on its own
//                      IndexedDB store; Olm then Megolm from bot to peer in ROOMS rooms (one
//                      inbound group session each at peer); prints the keys and a ciphertext
//   second EVENT_FILE  restored from the file: the same keys, and peer still decrypts EVENT
//   reopen             restored from the file: the keys and peer's room key count
// The result is the line starting with "RESULT " (the wasm may log on stdout too).
import { readFileSync } from "node:fs";
import {
  DecryptionSettings,
  DeviceId,
  DeviceLists,
  EncryptionSettings,
  OlmMachine,
  RequestType,
  RoomId,
  StoreHandle,
  TrustRequirement,
  UserId,
  initAsync,
} from "@matrix-org/matrix-sdk-crypto-wasm";
import { IdbMirror } from "../../src/crypto/IdbMirror.ts";

const [mode = "", file = "", arg = ""] = process.argv.slice(2);
const mirror = IdbMirror.open(file);

// The write-through's cost per committed transaction.
const writes = { count: 0, ms: 0 };
const proto = IdbMirror.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
for (const method of ["writeOps", "writeSnapshot"]) {
  const original = proto[method]!;
  proto[method] = function (this: unknown, ...a: unknown[]) {
    const t = performance.now();
    try {
      return original.apply(this, a);
    } finally {
      writes.ms += performance.now() - t;
      writes.count += 1;
    }
  };
}

const restoreStarted = performance.now();
await mirror.restore("crypto-");
const restoreMs = performance.now() - restoreStarted;
await initAsync();

const KEY = new Uint8Array(32).fill(7);
// Strings: a wasm UserId or DeviceId passed to the machine is moved into it (freed here).
const bot = { user: "@bot:x", device: "DEV", store: "crypto-bot" };
const peer = { user: "@peer:x", device: "PEER", store: "crypto-peer" };
const machineOf = async (who: typeof bot) =>
  OlmMachine.initFromStore(
    new UserId(who.user),
    new DeviceId(who.device),
    await StoreHandle.openWithKey(who.store, KEY),
  );
const botMachine = await machineOf(bot);
const peerMachine = await machineOf(peer);
const keysOf = (m: OlmMachine) => ({
  curve25519: m.identityKeys.curve25519.toBase64(),
  ed25519: m.identityKeys.ed25519.toBase64(),
});
// Early, for the test that kills this process mid-exchange.
console.log(`KEYS ${JSON.stringify({ bot: keysOf(botMachine), peer: keysOf(peerMachine) })}`);
const decryptAtPeer = async (event: string, room: string) => {
  const decrypted = await peerMachine.decryptRoomEvent(
    event,
    new RoomId(room),
    new DecryptionSettings(TrustRequirement.Untrusted),
  );
  return (JSON.parse(decrypted.event) as { content: { body: string } }).content.body;
};
const encryptAtBot = async (room: string, body: string, n: number) =>
  JSON.stringify({
    type: "m.room.encrypted",
    event_id: `$event${n}:x`,
    sender: "@bot:x",
    origin_server_ts: Date.now(),
    room_id: room,
    content: JSON.parse(
      await botMachine.encryptRoomEvent(
        new RoomId(room),
        "m.room.message",
        JSON.stringify({ msgtype: "m.text", body }),
      ),
    ) as unknown,
  });

// Answers a machine's outgoing requests as a homeserver would, from what the other uploaded.
const uploads = new Map<OlmMachine, { device_keys: unknown; one_time_keys: Record<string, unknown> }>();
async function serve(m: OlmMachine): Promise<void> {
  for (const request of await m.outgoingRequests()) {
    const body = JSON.parse(request.body) as Record<string, unknown>;
    let response: unknown = {};
    if (request.type === RequestType.KeysUpload) {
      uploads.set(m, body as never);
      const otks = Object.keys((body.one_time_keys as object | undefined) ?? {}).length;
      response = { one_time_key_counts: { signed_curve25519: otks } };
    } else if (request.type === RequestType.KeysQuery) {
      const other = m === botMachine ? peerMachine : botMachine;
      const who = m === botMachine ? peer : bot;
      response = {
        device_keys: {
          [who.user]: { [who.device]: uploads.get(other)?.device_keys },
        },
        failures: {},
      };
    } else if (request.type !== RequestType.ToDevice) {
      continue;
    }
    await m.markRequestAsSent(request.id ?? "", request.type, JSON.stringify(response));
  }
}

function claimResponse(): string {
  const otks = uploads.get(peerMachine)!.one_time_keys;
  const [id, key] = Object.entries(otks)[0]!;
  delete otks[id];
  return JSON.stringify({
    one_time_keys: { "@peer:x": { PEER: { [id]: key } } },
    failures: {},
  });
}

async function shareInto(room: string): Promise<void> {
  const requests = await botMachine.shareRoomKey(
    new RoomId(room),
    [new UserId(peer.user)],
    new EncryptionSettings(),
  );
  for (const request of requests) {
    const body = JSON.parse(request.body) as {
      messages: Record<string, Record<string, unknown>>;
    };
    const toDevice = Object.values(body.messages).flatMap((byDevice) =>
      Object.values(byDevice).map((content) => ({
        sender: "@bot:x",
        type: request.event_type,
        content,
      })),
    );
    await peerMachine.receiveSyncChanges(
      JSON.stringify(toDevice),
      new DeviceLists(),
      new Map([["signed_curve25519", 50]]),
      new Set(),
    );
    await botMachine.markRequestAsSent(request.id, RequestType.ToDevice, "{}");
  }
}

const result: Record<string, unknown> = { restoreMs };
if (mode === "first") {
  const rooms = Number(arg || "1");
  await serve(botMachine);
  await serve(peerMachine);
  await botMachine.updateTrackedUsers([new UserId(peer.user)]);
  await serve(botMachine);
  const claim = await botMachine.getMissingSessions([new UserId(peer.user)]);
  if (claim) await botMachine.markRequestAsSent(claim.id, RequestType.KeysClaim, claimResponse());
  const exchangeStarted = { writes: writes.count, ms: writes.ms };
  const t = performance.now();
  for (let r = 0; r < rooms; r++) {
    await shareInto(`!room${r}:x`);
    console.log(`SHARED ${r}`);
  }
  result.shareMs = performance.now() - t;
  const event = await encryptAtBot("!room0:x", "hello from process 1", 1);
  result.event = event;
  result.decryptedInProcess1 = await decryptAtPeer(event, "!room0:x");
  result.exchangeWrites = {
    count: writes.count - exchangeStarted.writes,
    ms: writes.ms - exchangeStarted.ms,
  };
} else if (mode === "second") {
  const event = readFileSync(arg, "utf8");
  result.decrypted = await decryptAtPeer(event, "!room0:x");
  // And the sender's outbound session goes on where process 1 left it.
  result.decryptedNext = await decryptAtPeer(
    await encryptAtBot("!room0:x", "hello from process 2", 2),
    "!room0:x",
  );
}
result.bot = keysOf(botMachine);
result.peer = keysOf(peerMachine);
result.peerRoomKeys = Number((await peerMachine.roomKeyCounts()).total);
result.writes = writes;
result.stats = await mirror.stats();
botMachine.close();
peerMachine.close();
await mirror.close();
console.log(`RESULT ${JSON.stringify(result)}`);
