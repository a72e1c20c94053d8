// Test plugin for the soak test: `!soak <count> <ghost> <user> <device> <tag>` makes the ghost join
// the room, then sends <count> numbered room messages, alternating the ghost and the bot (one
// lane: the room), and a to-device message to <user>'s <device> for every fourth. All are caused
// by the one command event.
import { definePlugin } from "../../../src/index.ts";

export const TO_DEVICE_EVERY = 4;

export default definePlugin({
  name: "soak",
  setup(bot) {
    bot.command("soak", async (ctx) => {
      const [count, ghost, user, device, tag] = ctx.command.args as [string, string, string, string, string];
      await ctx.intent(ghost).join(ctx.roomId);
      const sends = [];
      for (let n = 0; n < Number(count); n++) {
        const as = n % 3 === 2 ? {} : { as: ghost };
        sends.push(ctx.send(ctx.roomId, { msgtype: "m.text", body: `${tag} ${n}`, tag, n }, as));
        if (n % TO_DEVICE_EVERY === 0) {
          sends.push(ctx.sendToDevice(user, device, "org.example.soak", { tag, n }, { as: ghost }));
        }
      }
      await Promise.all(sends);
    });
  },
});
