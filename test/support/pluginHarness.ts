// One plugin host over an outbox whose transport records every request: for plugin unit tests.
import { pino } from "pino";
import { PluginHost } from "../../src/plugins/PluginHost.ts";
import { Outbox } from "../../src/outbox/Outbox.ts";
import { SqliteOutboxStore } from "../../src/store/sqlite/SqliteOutboxStore.ts";
import { SqlitePluginData } from "../../src/store/sqlite/SqlitePluginData.ts";
import type { MatrixRequest } from "../../src/matrix/requests.ts";
import { userId } from "../../src/ids.ts";

export const BOT = "@courier:x";

export async function pluginHarness() {
  const sent: MatrixRequest[] = [];
  const outbox = new Outbox({
    store: new SqliteOutboxStore({ path: ":memory:" }),
    transport: { send: async (req) => (sent.push(req), { event_id: `$sent${sent.length}` }) },
    appserviceId: "t",
    botUserId: userId(BOT),
  });
  const host = new PluginHost({
    outbox,
    data: new SqlitePluginData({ path: ":memory:" }),
    logger: pino({ level: "silent" }),
    botUserId: BOT,
    isOwnUser: (id) => id === BOT,
    intent: () => {
      throw new Error("not used in this test");
    },
  });
  await outbox.start();
  let seq = 0;
  /** Dispatches a room event (fields beyond the defaults come from `event`). */
  const dispatch = (event: Record<string, unknown>) => {
    seq++;
    const full = { event_id: `$${seq}`, room_id: "!r:x", sender: "@ann:x", origin_server_ts: 1, ...event };
    return host.dispatch({
      seq,
      txnId: "t",
      kind: "event",
      lane: `room:${String(full.room_id)}`,
      key: `event:${full.event_id}`,
      eventId: full.event_id,
      attempts: 0,
      json: JSON.stringify(full),
    });
  };
  /** The `body` of everything sent so far, once the outbox is idle. */
  const bodies = async () => (await outbox.onIdle(), sent.map((r) => JSON.parse(r.body!).body as string));
  return { host, outbox, sent, dispatch, bodies };
}
