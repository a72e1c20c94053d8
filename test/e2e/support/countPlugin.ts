// Test plugin for the "handled once" tests (issue #14): every handler run appends one JSON line
// to a file (plugin config `file`, else env COURIER_COUNT_FILE), synchronously, as the handler
// starts. The file outlives the process, so the runs of a killed and restarted framework add up.
//
// Handlers: every m.room.message (by event id), to-device messages of type COUNT_TO_DEVICE_TYPE
// (by the `nonce` their sender puts in the content), m.typing and m.receipt (by room, users,
// receipted event ids). None of them sends anything.
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { z } from "zod";
import { definePlugin } from "../../../src/index.ts";

export const COUNT_TO_DEVICE_TYPE = "org.example.count";

export type HandlerRun =
  | { handler: "m.room.message"; eventId: string; roomId: string; body: unknown; pid: number }
  | { handler: "toDevice"; nonce: unknown; sender: string; pid: number }
  | { handler: "m.typing"; roomId: string | undefined; userIds: string[]; pid: number }
  | {
      handler: "m.receipt";
      roomId: string | undefined;
      /** `<event id> <receipt type> <user id>` for each receipt in the event. */
      receipts: string[];
      pid: number;
    };

/** Every run the file records, in order; a line still being written is left out. */
export function readRuns(file: string): HandlerRun[] {
  if (!existsSync(file)) return [];
  const runs: HandlerRun[] = [];
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line) continue;
    try {
      runs.push(JSON.parse(line) as HandlerRun);
    } catch {
      // the last line, half written
    }
  }
  return runs;
}

export default definePlugin({
  name: "count",
  config: z.object({ file: z.string().min(1).optional() }).strict(),
  setup(bot) {
    const file = bot.config.file ?? process.env.COURIER_COUNT_FILE;
    if (!file) throw new Error("count plugin: set config.file or COURIER_COUNT_FILE");
    const record = (run: Record<string, unknown>) =>
      appendFileSync(file, `${JSON.stringify({ ...run, pid: process.pid })}\n`);

    bot.on<{ body?: unknown }>("m.room.message", (ctx) =>
      record({
        handler: "m.room.message",
        eventId: ctx.event.event_id,
        roomId: ctx.roomId,
        body: ctx.event.content.body,
      }),
    );
    bot.onToDevice<{ nonce?: unknown }>(COUNT_TO_DEVICE_TYPE, (ctx) =>
      record({ handler: "toDevice", nonce: ctx.event.content.nonce, sender: ctx.sender }),
    );
    bot.onEphemeral<{ user_ids?: unknown }>("m.typing", (ctx) =>
      record({
        handler: "m.typing",
        roomId: ctx.event.room_id,
        userIds: Array.isArray(ctx.event.content.user_ids) ? ctx.event.content.user_ids : [],
      }),
    );
    bot.onEphemeral<Record<string, Record<string, Record<string, unknown>>>>("m.receipt", (ctx) => {
      const receipts: string[] = [];
      for (const [eventId, byType] of Object.entries(ctx.event.content)) {
        for (const [type, byUser] of Object.entries(byType ?? {})) {
          for (const userId of Object.keys(byUser ?? {})) receipts.push(`${eventId} ${type} ${userId}`);
        }
      }
      record({ handler: "m.receipt", roomId: ctx.event.room_id, receipts });
    });
  },
});
