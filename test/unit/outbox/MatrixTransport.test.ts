// Device masquerading (`outbox.ghostDevices`): the outbox names the device in every path (and in
// the request's `deviceId`), and the transport makes sure the device exists before a user's first
// such request.
import { Outbox } from "../../../src/outbox/Outbox.ts";
import { SqliteOutboxStore } from "../../../src/store/sqlite/SqliteOutboxStore.ts";
import { MatrixError, MatrixNetworkError } from "../../../src/matrix/MatrixError.ts";
import type { MatrixClient } from "../../../src/matrix/MatrixClient.ts";
import { roomSendRequest, type Masquerade, type MatrixRequest } from "../../../src/matrix/requests.ts";
import { COURIER_DEVICE_ID, MatrixTransport } from "../../../src/outbox/MatrixTransport.ts";
import { roomId, userId, type TxnId } from "../../../src/ids.ts";

const BOT = "@bot:example.org";
const GHOST = "@ghost_1:example.org";

/** The three calls the transport makes, recorded; devices live in a set like a homeserver's. */
class StubClient {
  calls: string[] = [];
  devices = new Set<string>();
  sendAnswer: (req: MatrixRequest) => Promise<unknown> = async () => ({ event_id: "$e" });
  hasDeviceAnswer: (() => Promise<boolean>) | undefined;
  async send(req: MatrixRequest): Promise<unknown> {
    this.calls.push(`send ${req.path}`);
    return this.sendAnswer(req);
  }
  async hasDevice(deviceId: string, as?: Masquerade): Promise<boolean> {
    const user = as?.userId ?? BOT;
    this.calls.push(`has ${user} ${deviceId}`);
    if (this.hasDeviceAnswer) return this.hasDeviceAnswer();
    return this.devices.has(`${user}/${deviceId}`);
  }
  async ensureDevice(localpart: string, deviceId: string): Promise<string> {
    this.calls.push(`login ${localpart} ${deviceId}`);
    this.devices.add(`@${localpart}:example.org/${deviceId}`);
    return deviceId;
  }
}

const setup = () => {
  const client = new StubClient();
  return { client, provisioner: new MatrixTransport(client as unknown as MatrixClient, BOT) };
};

const req = (as?: Masquerade): MatrixRequest =>
  roomSendRequest({
    roomId: roomId("!r:example.org"),
    eventType: "m.room.message",
    txnId: "t1" as TxnId,
    content: {},
    as,
  });
const ghost = { userId: userId(GHOST), deviceId: COURIER_DEVICE_ID };
const ghostQuery = `?user_id=${encodeURIComponent(GHOST)}&device_id=COURIER&org.matrix.msc3202.device_id=COURIER`;

describe("the outbox's deviceId option", () => {
  test("every sender's path names the device: the bot with its user_id, ghosts alike; off, nothing changes", async () => {
    const paths = async (deviceId: typeof COURIER_DEVICE_ID | undefined) => {
      const seen: string[] = [];
      const outbox = new Outbox({
        store: new SqliteOutboxStore({ path: ":memory:" }),
        transport: { send: async (r) => (seen.push(r.path), { event_id: "$x" }) },
        appserviceId: "test",
        botUserId: userId(BOT),
        ...(deviceId ? { deviceId } : {}),
      });
      await outbox.start();
      const scope = outbox.cause("c");
      await scope.send(roomId("!r:example.org"), { body: "from the bot" });
      await scope.send(roomId("!r:example.org"), { body: "from a ghost" }, { sender: userId(GHOST) });
      await outbox.onIdle();
      await outbox.stop();
      return seen.map((p) => p.slice(p.indexOf("?") < 0 ? p.length : p.indexOf("?")));
    };
    expect(await paths(COURIER_DEVICE_ID)).toEqual([
      `?user_id=${encodeURIComponent(BOT)}&device_id=COURIER&org.matrix.msc3202.device_id=COURIER`,
      ghostQuery,
    ]);
    expect(await paths(undefined)).toEqual(["", `?user_id=${encodeURIComponent(GHOST)}`]);
  });

  test("a request read back from the journal names its device again: a replay after a restart provisions it too", async () => {
    const store = new SqliteOutboxStore({ path: ":memory:" });
    const options = { store, appserviceId: "test", botUserId: userId(BOT), deviceId: COURIER_DEVICE_ID };
    // Journaled by one process that stopped before sending…
    const before = new Outbox({ ...options, transport: { send: async () => ({}) } });
    await before.cause("c").send(roomId("!r:example.org"), { body: "hi" }, { sender: userId(GHOST) });
    await store.flush();
    // …and replayed by the next.
    const seen: MatrixRequest[] = [];
    const after = new Outbox({
      ...options,
      transport: { send: async (r) => (seen.push(r), { event_id: "$x" }) },
    });
    await after.start();
    await after.onIdle();
    await after.stop();
    expect(seen.map((r) => [r.userId, r.deviceId])).toEqual([[GHOST, COURIER_DEVICE_ID]]);
    expect(seen[0]?.path.endsWith(ghostQuery)).toBe(true);
  });
});

describe("MatrixTransport", () => {
  test("requests without a device pass straight through", async () => {
    const { client, provisioner } = setup();
    await provisioner.send(req({ userId: userId(GHOST) }));
    expect(client.calls).toEqual([`send ${req({ userId: userId(GHOST) }).path}`]);
  });

  test("a ghost's first masqueraded request creates its device, once, even for concurrent requests", async () => {
    const { client, provisioner } = setup();
    await Promise.all([provisioner.send(req(ghost)), provisioner.send(req(ghost))]);
    await provisioner.send(req(ghost));
    expect(client.calls.filter((c) => !c.startsWith("send"))).toEqual([
      `has ${GHOST} COURIER`,
      "login ghost_1 COURIER",
    ]);
    expect(client.calls.filter((c) => c.startsWith("send"))).toHaveLength(3);
  });

  test("an existing device is only looked at, not logged into again (no access tokens pile up)", async () => {
    const { client, provisioner } = setup();
    client.devices.add(`${GHOST}/COURIER`);
    await provisioner.send(req(ghost));
    expect(client.calls.filter((c) => c.startsWith("login"))).toEqual([]);
  });

  test("the bot's device (no user_id) is checked without masquerading and logged into by its localpart", async () => {
    const { client, provisioner } = setup();
    await provisioner.send(req({ deviceId: COURIER_DEVICE_ID }));
    expect(client.calls.slice(0, 2)).toEqual([`has ${BOT} COURIER`, "login bot COURIER"]);
  });

  test("M_UNKNOWN_DEVICE (device deleted behind our back) provisions it again and resends once", async () => {
    const { client, provisioner } = setup();
    client.devices.add(`${GHOST}/COURIER`);
    await provisioner.send(req(ghost));
    client.devices.clear();
    let first = true;
    client.sendAnswer = async () => {
      if (first) {
        first = false;
        throw new MatrixError(400, { errcode: "M_UNKNOWN_DEVICE", error: "no such device" });
      }
      return { event_id: "$again" };
    };
    expect(await provisioner.send(req(ghost))).toEqual({ event_id: "$again" });
    expect(client.calls.slice(2)).toEqual([
      `send ${req(ghost).path}`,
      `has ${GHOST} COURIER`,
      "login ghost_1 COURIER",
      `send ${req(ghost).path}`,
    ]);
  });

  test("a failed provisioning rejects the request (retryable) and is tried again next time", async () => {
    const { client, provisioner } = setup();
    client.hasDeviceAnswer = async () => {
      throw new MatrixNetworkError("down", "ECONNREFUSED");
    };
    await expect(provisioner.send(req(ghost))).rejects.toBeInstanceOf(MatrixNetworkError);
    expect(client.calls.filter((c) => c.startsWith("send"))).toEqual([]);
    client.hasDeviceAnswer = undefined;
    await provisioner.send(req(ghost));
    expect(client.calls.filter((c) => c.startsWith("login"))).toEqual(["login ghost_1 COURIER"]);
  });

  test("a homeserver that refuses devices for good still gets the request (it decides), asked once", async () => {
    const { client, provisioner } = setup();
    client.hasDeviceAnswer = async () => {
      throw new MatrixError(400, { errcode: "M_UNRECOGNIZED", error: "no such endpoint" });
    };
    expect(await provisioner.send(req(ghost))).toEqual({ event_id: "$e" });
    await provisioner.send(req(ghost));
    expect(client.calls.filter((c) => c.startsWith("has"))).toHaveLength(1);
    expect(client.calls.filter((c) => c.startsWith("send"))).toHaveLength(2);
  });
});
