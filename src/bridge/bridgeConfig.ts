import { z } from "zod";

/**
 * The config every bridge has, beside its connector's own fields (`defineBridge` merges them).
 * Defaults are written here only.
 */
export const bridgeConfigShape = {
  /** Ghost localparts: one `{id}`, the escaped remote user id. @default "courier_<bridge>_{id}" */
  ghosts: z.string().optional(),
  /** Alias localpart prefix for portals made by alias query (`#<prefix><channel>:server`). @default "<bridge>_" */
  aliasPrefix: z.string().optional(),
  /** Channels bridged at start: to `room` (an existing room id the bot is in) or to a room it creates. */
  portals: z
    .array(z.object({ channel: z.string().min(1), room: z.string().startsWith("!").optional() }))
    .default([]),
  /** Rooms the bridge creates: who may join, and who is invited. */
  portalRooms: z
    .object({
      preset: z.enum(["public_chat", "private_chat"]).default("public_chat"),
      invite: z.array(z.string()).default([]),
    })
    .default({ preset: "public_chat", invite: [] }),
  /** Where the management commands are accepted (besides rooms where the sender has power 50). @default any room */
  adminRoom: z.string().optional(),
  /** Matrix users without a remote identity are relayed through the bridge's own connection. @default true */
  relay: z.boolean().default(true),
  /** Sends to the remote network, per connection (its flood limit). */
  remoteRate: z
    .object({ perSecond: z.number().positive().default(1), burst: z.number().int().min(1).default(4) })
    .default({ perSecond: 1, burst: 4 }),
  /** Earlier remote messages put in a room the bridge creates, when the connector can backfill. @default 0 */
  backfill: z.number().int().min(0).default(0),
  /** Tries of a remote send that fails (a disconnected network is waited for without limit). @default 5 */
  remoteMaxAttempts: z.number().int().min(1).default(5),
};

export type BridgeConfig = z.output<z.ZodObject<typeof bridgeConfigShape>>;
