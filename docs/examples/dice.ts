import { z } from "zod";
import { definePlugin } from "../../src/index.ts"; // in your project: from "matrix-courier"

export default definePlugin({
  name: "dice",
  config: z.object({
    /** Most dice in one roll. */
    maxDice: z.number().int().min(1).default(20),
  }),
  setup(bot) {
    bot.command(
      "roll",
      (ctx) => {
        const match = /^(\d+)d(\d+)$/.exec(ctx.command.args[0] ?? "1d6");
        if (!match) return ctx.reply("usage: !roll NdM, e.g. !roll 2d6");
        const [count, sides] = [Number(match[1]), Number(match[2])];
        if (count > bot.config.maxDice) return ctx.reply(`at most ${bot.config.maxDice} dice`);
        const rolls = Array.from({ length: count }, () => 1 + Math.floor(Math.random() * sides));
        ctx.log.info({ rolls }, "rolled");
        return ctx.reply(`${rolls.join(" + ")} = ${rolls.reduce((a, b) => a + b, 0)}`);
      },
      { usage: "[NdM]", help: "rolls dice" },
    );
  },
});
