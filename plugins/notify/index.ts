// Turns JSON POSTs into room notices: a generic template, Prometheus Alertmanager, GitHub.
// Routes (under /plugins/notify/ on the appservice endpoint):
//   POST /generic       the body through `template` ({{dotted.path}} placeholders)
//   POST /alertmanager  an Alertmanager webhook (v4) → "[FIRING:2] InstanceDown …"
//   POST /github        a GitHub webhook (push, issues, others), signed with X-Hub-Signature-256
// Retries of one delivery send nothing twice (see README.md for the delivery ids).
import { z } from "zod";
import { CourierError, definePlugin } from "../../src/index.ts";
import {
  DEFAULT_TEMPLATE,
  alertmanagerDeliveryId,
  formatAlertmanager,
  formatGithub,
  formatTemplate,
  isAlertmanagerPayload,
  noticeContent,
} from "./format.ts";

const badPayload = (message: string) =>
  new CourierError("COURIER_NOTIFY_BAD_PAYLOAD", "M_BAD_JSON", 400, message);

export default definePlugin({
  name: "notify",
  config: z
    .object({
      /** The room the notices go to (a room id; the bot must be joined). */
      // Room version 12 ids have no server part (`!opaque`); older ones do (`!abc:example.org`).
      room: z.string().regex(/^![^:\s]+(:\S+)?$/, "expected a room id like !abc:example.org or !opaque"),
      /** The shared secret senders authenticate with. */
      secret: z.string().min(1),
      /**
       * How /generic and /alertmanager check the secret. /github always checks GitHub's
       * signature (hmac-sha256): GitHub cannot send an Authorization header. @default "bearer"
       */
      scheme: z.enum(["bearer", "hmac-sha256"]).default("bearer"),
      /** The generic route's template. @default "{{title}}: {{body}}" */
      template: z.string().min(1).default(DEFAULT_TEMPLATE),
      /** Slot of the Alertmanager delivery ids, in ms (see format.ts). @default 300000 */
      alertmanagerWindowMs: z.number().int().positive().default(300_000),
    })
    .strict(),
  setup(bot) {
    const { room, template, alertmanagerWindowMs } = bot.config;

    bot.webhook("POST", "/generic", async (ctx, req) => {
      if (req.body === undefined) throw badPayload("The body is empty: send a JSON object (or text).");
      await ctx.send(room, noticeContent(formatTemplate(template, req.body)));
    });

    bot.webhook(
      "POST",
      "/alertmanager",
      async (ctx, req) => {
        if (!isAlertmanagerPayload(req.body)) {
          throw badPayload("Expected an Alertmanager webhook payload (a JSON object with `alerts`).");
        }
        await ctx.send(room, noticeContent(formatAlertmanager(req.body)));
      },
      {
        deliveryId: (req) =>
          isAlertmanagerPayload(req.body)
            ? alertmanagerDeliveryId(req.body, Date.now(), alertmanagerWindowMs)
            : undefined,
      },
    );

    bot.webhook(
      "POST",
      "/github",
      async (ctx, req) => {
        const event = req.headers["x-github-event"];
        if (!event) throw badPayload("Missing the X-GitHub-Event header.");
        const payload = req.body;
        if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
          throw badPayload(
            "Expected a JSON object (set the GitHub webhook's content type to application/json).",
          );
        }
        await ctx.send(room, noticeContent(formatGithub(event, payload as Record<string, unknown>)));
      },
      { scheme: "hmac-sha256" },
    );
  },
});
