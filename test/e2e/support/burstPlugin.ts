// Test plugin of the "burst under latency" scenario (support/ghostBurst.ts): `!burst <count> <ghost>`
// makes the ghost join the room and send <count> numbered messages, all caused by the one command
// event; `!mark <ghost> <label>` makes it send one more, a marker (`mark: <label>`, no number).
import { definePlugin } from "../../../src/index.ts";

export default definePlugin({
  name: "burst",
  setup(bot) {
    bot.command("burst", async (ctx) => {
      const [count, ghost] = ctx.command.args;
      await ctx.intent(ghost!).join(ctx.roomId);
      const sends = [];
      for (let n = 0; n < Number(count); n++) {
        sends.push(ctx.send(ctx.roomId, { msgtype: "m.text", body: `burst ${n}`, n }, { as: ghost! }));
      }
      await Promise.all(sends);
    });
    bot.command("mark", async (ctx) => {
      const [ghost, label] = ctx.command.args;
      await ctx.send(ctx.roomId, { msgtype: "m.text", body: `mark ${label}`, mark: label }, { as: ghost! });
    });
  },
});
