// Greets people who join a room the bot is in. The greeting is a template: `{name}` is the
// member's display name (or user id), `{user}` the user id, `{room}` the room id.
import { z } from "zod";
import { definePlugin } from "../../src/index.ts";

interface Member {
  membership?: string;
  displayname?: string;
}

export default definePlugin({
  name: "welcome",
  config: z
    .object({
      /** @default "Welcome, {name}!" */
      text: z.string().min(1).default("Welcome, {name}!"),
      /** Only these rooms; every room the bot is in when empty. @default [] */
      rooms: z.array(z.string()).default([]),
    })
    .strict(),
  setup(bot) {
    bot.on<Member>({ type: "m.room.member", membership: "join" }, (ctx) => {
      const { event } = ctx;
      if (event.state_key !== event.sender) return; // someone else's change of a member, not a join
      // A display name or avatar change is also a join → join: greet only real arrivals.
      const before = (event.unsigned?.prev_content as Member | undefined)?.membership;
      if (before === "join") return;
      if (bot.config.rooms.length > 0 && !bot.config.rooms.includes(ctx.roomId)) return;
      const text = bot.config.text
        .replaceAll("{name}", event.content.displayname ?? event.sender)
        .replaceAll("{user}", event.sender)
        .replaceAll("{room}", ctx.roomId);
      return ctx.send(ctx.roomId, { msgtype: "m.notice", body: text });
    });
  },
});
