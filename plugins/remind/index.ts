// Reminders: `!remind 10m stretch`, `!remind 2026-12-01 09:00 send the report`, `!remind list`,
// `!remind cancel <id>`. Kept in the plugin's store, delivered by a schedule that looks for due
// ones; each reminder's notice is keyed by its id (`ctx.once`), so it is sent once even when the
// framework crashes between sending it and forgetting it, and a reminder due while the framework
// was down is sent when it comes back.
import { createHash } from "node:crypto";
import { z } from "zod";
import { definePlugin, type PluginStore } from "../../src/index.ts";
import { parseWhen } from "./when.ts";

interface Reminder {
  readonly id: string;
  readonly roomId: string;
  readonly userId: string;
  readonly text: string;
  readonly due: number;
}

const KEY = "reminder:";
const MAX_TEXT = 2_000;

/** Short and derived from the command's event: a re-run of the handler sets the same reminder. */
const idFor = (eventId: string) => createHash("sha256").update(eventId).digest("base64url").slice(0, 6);

const mine = async (store: PluginStore, roomId: string, userId: string) =>
  (await store.list<Reminder>(KEY))
    .map((e) => e.value)
    .filter((r) => r.roomId === roomId && r.userId === userId)
    .sort((a, b) => a.due - b.due);

export default definePlugin({
  name: "remind",
  config: z
    .object({
      /** Of dates and times given in commands and shown in answers. @default "UTC" */
      timezone: z.string().min(1).default("UTC"),
      /** How often due reminders are looked for: a duration or ms. @default "15s" */
      checkEvery: z.union([z.string(), z.number().int().positive()]).default("15s"),
      /** Reminders one user may have in one room. @default 50 */
      maxPerUser: z.number().int().positive().default(50),
    })
    .strict(),
  setup(bot) {
    const { timezone, maxPerUser } = bot.config;
    const show = (due: number) =>
      new Intl.DateTimeFormat("sv-SE", { timeZone: timezone, dateStyle: "short", timeStyle: "short" }).format(
        due,
      );

    bot.command(
      "remind",
      async (ctx) => {
        const [sub, ...more] = ctx.command.args;
        if (sub === "list") {
          const list = await mine(ctx.store, ctx.roomId, ctx.sender);
          return ctx.reply(
            list.length === 0
              ? "You have no reminders here."
              : list.map((r) => `${r.id}  ${show(r.due)} ${timezone}  ${r.text}`).join("\n"),
          );
        }
        if (sub === "cancel") {
          const id = more[0] ?? "";
          const reminder = await ctx.store.get<Reminder>(KEY + id);
          if (!reminder || reminder.userId !== ctx.sender || reminder.roomId !== ctx.roomId)
            return ctx.reply(`No reminder ${id} of yours here (see !remind list).`);
          await ctx.store.delete(KEY + id);
          return ctx.reply(`Cancelled ${id}.`);
        }
        const when = parseWhen(ctx.command.args, ctx.event.origin_server_ts, timezone);
        if ("error" in when) return ctx.reply(`Cannot set that reminder: ${when.error}.`);
        const text = when.rest.join(" ").trim();
        if (text === "") return ctx.reply("Cannot set that reminder: what should I remind you of?");
        if (text.length > MAX_TEXT)
          return ctx.reply(`Cannot set that reminder: at most ${MAX_TEXT} characters.`);
        const id = idFor(ctx.event.event_id);
        if ((await ctx.store.get(KEY + id)) === undefined) {
          if ((await mine(ctx.store, ctx.roomId, ctx.sender)).length >= maxPerUser)
            return ctx.reply(`Cannot set that reminder: you have ${maxPerUser} here already.`);
        }
        const reminder: Reminder = { id, roomId: ctx.roomId, userId: ctx.sender, text, due: when.due };
        await ctx.store.set(KEY + id, reminder);
        return ctx.reply(`OK, ${show(when.due)} ${timezone} (id ${id}).`);
      },
      { usage: "<10m | 2026-12-01 09:00> <text> | list | cancel <id>", help: "reminds you later, once" },
    );

    bot.every(
      bot.config.checkEvery,
      async (ctx) => {
        const now = Math.max(Date.now(), ctx.slot.getTime());
        for (const { value: r } of await ctx.store.list<Reminder>(KEY)) {
          if (r.due > now) continue;
          // Keyed by the reminder, not the slot: whichever run delivers it, it is sent once.
          await ctx.once(`remind:${r.id}`).send(r.roomId, {
            msgtype: "m.text",
            body: `${r.userId}: reminder: ${r.text}`,
            "m.mentions": { user_ids: [r.userId] },
          });
          await ctx.store.delete(KEY + r.id);
        }
      },
      { name: "due" },
    );
  },
});
