// Test plugin for encryption with ghosts: `!ghostsay <text>` has the ghost @courier_ghost invited
// by the bot, joined, and then say the text in the room (as a bridge's ghosts do).
import { definePlugin } from "../../../src/index.ts";

export const GHOST_LOCALPART = "courier_ghost";

export default definePlugin({
  name: "ghostsay",
  setup(bot) {
    bot.command("ghostsay", async (ctx) => {
      const ghost = `@${GHOST_LOCALPART}:${bot.userId.split(":")[1]}`;
      await ctx.intent(ghost).ensureRegistered();
      await ctx.intent(bot.userId).invite(ctx.roomId, ghost);
      await ctx.intent(ghost).join(ctx.roomId);
      await ctx.send(ctx.roomId, { msgtype: "m.text", body: ctx.command.rest }, { as: ghost });
    });
  },
});
