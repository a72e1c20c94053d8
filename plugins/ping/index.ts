// Liveness both ways: a to-device `m.courier.ping` is answered with `m.courier.pong` to the
// device that sent it (named in the ping's `device_id`, else all the sender's devices), and
// `!ping` in a room answers with the time the message took to reach us.
import { z } from "zod";
import { definePlugin } from "../../src/index.ts";

interface PingContent {
  device_id?: string;
  nonce?: string;
}

export default definePlugin({
  name: "ping",
  config: z.object({}).strict(),
  setup(bot) {
    bot.onToDevice<PingContent>("m.courier.ping", (ctx) =>
      ctx.sendToDevice(
        ctx.event.sender,
        ctx.event.content.device_id ?? "*",
        "m.courier.pong",
        { nonce: ctx.event.content.nonce ?? null, at: Date.now() },
        // Answer as the user the ping was sent to (the bot, or one of our ghosts).
        { as: ctx.event.to_user_id },
      ),
    );
    bot.command(
      "ping",
      (ctx) => {
        const ms = Math.max(0, Date.now() - ctx.event.origin_server_ts);
        return ctx.reply(`pong (${ms} ms from the homeserver to courier)`);
      },
      { help: "answers with the delivery time of your message" },
    );
  },
});
