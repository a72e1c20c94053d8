// The hello world of matrix-courier: `!echo <text>` answers with the text.
import { z } from "zod";
import { definePlugin } from "../../src/index.ts";

export default definePlugin({
  name: "echo",
  config: z.object({
    /** Put in front of every echo. @default "" */
    prefix: z.string().default(""),
  }),
  setup(bot) {
    bot.command("echo", (ctx) => ctx.reply(`${bot.config.prefix}${ctx.command.rest}`), {
      usage: "<text>",
      help: "says the text back",
    });
  },
});
