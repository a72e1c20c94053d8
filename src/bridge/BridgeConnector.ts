import type { Logger } from "pino";

/**
 * What a bridge author implements: the remote network's side. The framework owns the Matrix side
 * (ghosts, portals, the message map, journaling, ordering, retries); the connector only talks to
 * its network. Modelled on mautrix-go bridgev2's `NetworkConnector`/`NetworkAPI` split
 * (bridgev2/networkinterface.go), much smaller: one required interface, and optional capability
 * interfaces (`EditCapable`, `RedactCapable`, …) the framework detects at run time and never
 * calls when missing.
 */
export interface BridgeConnector {
  /**
   * Connects to the network and starts reporting its events through `host.report`. Called once
   * at start, after the framework replayed what it had journaled. May resolve before the
   * connection is up (a reconnecting client); sends then fail with `RemoteUnavailableError`
   * until it is.
   */
  connect(host: BridgeHost): Promise<void>;
  /** Closes the connection. Called once at stop; nothing is sent after it. */
  disconnect(): Promise<void>;
  /**
   * Sends one Matrix message to the remote channel. Called once per Matrix event id (and again
   * only when a try failed or the framework crashed before recording the success), in order
   * per channel, at the rate of its connection. Resolves the remote message id when the
   * network gives one (kept in the message map), else undefined. Throws
   * `RemoteUnavailableError` while disconnected (retried without limit), `PermanentRemoteError`
   * when it can never succeed (reported into the room); anything else is retried a few times.
   */
  sendMessage(message: OutgoingMessage): Promise<string | undefined>;
  /** The remote user's profile, or undefined when unknown. May do I/O. */
  lookupUser(remoteUserId: string): Promise<RemoteUser | undefined>;
  /** The remote channel's name and topic, or undefined when it does not exist. May do I/O. */
  lookupChannel(channelId: string): Promise<RemoteChannel | undefined>;
  /**
   * Which connection (rate limit bucket) a Matrix user's messages leave through. @default
   * "relay": one connection for everyone (relay mode)
   */
  connectionFor?(matrixUserId: string): string;
  /** A portal was made for the channel while connected: join it. @default nothing */
  joinChannel?(channelId: string): Promise<void>;
  /** The channel's portal was removed: leave it. @default nothing */
  leaveChannel?(channelId: string): Promise<void>;
  /** Remote sends the message takes from its connection's rate (lines, on IRC). @default 1 */
  cost?(message: OutgoingMessage): number;
  /** One line on the connection for `!<bridge> status`. @default none */
  status?(): string;
}

/** Edits of sent messages on the remote side. */
export interface EditCapable {
  editMessage(message: OutgoingMessage & { readonly remoteId: string }): Promise<void>;
}
/** Deletes of sent messages on the remote side. */
export interface RedactCapable {
  redactMessage(channelId: string, remoteId: string): Promise<void>;
}
/** Reactions on the remote side. */
export interface ReactCapable {
  react(channelId: string, remoteId: string, key: string, sender: MatrixSender): Promise<void>;
}
/** Typing notifications on the remote side. */
export interface TypingCapable {
  setTyping(channelId: string, sender: MatrixSender, typing: boolean): Promise<void>;
}
/** Earlier remote messages of a channel, reported through `host.report`, when a portal is created. */
export interface BackfillCapable {
  backfill(channelId: string, limit: number): Promise<void>;
}

const has = (connector: object, method: string): boolean =>
  typeof (connector as Record<string, unknown>)[method] === "function";
export const canEdit = (c: BridgeConnector): c is BridgeConnector & EditCapable => has(c, "editMessage");
export const canRedact = (c: BridgeConnector): c is BridgeConnector & RedactCapable =>
  has(c, "redactMessage");
export const canReact = (c: BridgeConnector): c is BridgeConnector & ReactCapable => has(c, "react");
export const canType = (c: BridgeConnector): c is BridgeConnector & TypingCapable => has(c, "setTyping");
export const canBackfill = (c: BridgeConnector): c is BridgeConnector & BackfillCapable => has(c, "backfill");

/** What the framework gives the connector. */
export interface BridgeHost {
  readonly log: Logger;
  /**
   * Journals a remote event and resolves once it is committed; the framework acts on it after
   * (in order per channel), also after a crash. An event whose `id` was journaled before is a
   * redelivery: it is acted on once. Events without an id get one when journaled.
   */
  report(event: RemoteEvent): Promise<void>;
  /** Channels bridged to a room, for the connector to join. */
  channels(): Promise<string[]>;
}

/** Who sent a Matrix message, as the remote side may show it. */
export interface MatrixSender {
  readonly userId: string;
  readonly displayName: string;
}

/** A Matrix message for the remote side. `text` is plain; `html` when the Matrix event had it. */
export interface OutgoingMessage {
  readonly channelId: string;
  /** The Matrix event id (the journal key of the send). */
  readonly eventId: string;
  readonly sender: MatrixSender;
  /** True when the sender has no remote identity: the relay says who it is from. */
  readonly relayed: boolean;
  readonly text: string;
  readonly html?: string;
  /** An `m.emote` (`/me`). */
  readonly emote: boolean;
  /** The remote id of the message it replies to, when known. */
  readonly replyTo?: string;
  /** Who wrote the message it replies to, when that was a remote user (IRC says `nick: text`). */
  readonly replyToUser?: RemoteUser;
  /** Set when this is an edit of an earlier message the connector cannot edit: text is the new text. */
  readonly editOf?: string;
}

export interface RemoteUser {
  readonly id: string;
  readonly displayName: string;
  /** An `mxc://` URI. */
  readonly avatarUrl?: string;
}

export interface RemoteChannel {
  readonly id: string;
  readonly name: string;
  readonly topic?: string;
}

/** Something that happened on the remote network. */
export type RemoteEvent =
  | {
      readonly kind: "message";
      readonly channelId: string;
      /** The remote message id; omit when the network has none (the framework assigns one). */
      readonly id?: string;
      readonly sender: RemoteUser;
      readonly text: string;
      readonly html?: string;
      readonly emote?: boolean;
      readonly notice?: boolean;
      /** The remote id of the message this one replies to. */
      readonly replyTo?: string;
      /** Matrix users it mentions (`m.mentions`; put the pills in `html`). */
      readonly mentions?: readonly string[];
      /** The remote id of the message this one replaces (an edit). */
      readonly editOf?: string;
    }
  | {
      readonly kind: "redaction";
      readonly channelId: string;
      readonly id?: string;
      readonly target: string;
      readonly sender: RemoteUser;
    }
  | {
      readonly kind: "join" | "leave";
      readonly channelId: string;
      readonly id?: string;
      readonly user: RemoteUser;
      readonly reason?: string;
    }
  | {
      /** A remote user who now has another id (an IRC nick change): a new ghost takes over. */
      readonly kind: "rename";
      readonly id?: string;
      readonly from: RemoteUser;
      readonly to: RemoteUser;
      readonly channelIds: readonly string[];
    }
  | {
      /** The remote user's rank in the channel, as a Matrix power level (IRC: +o is 50). */
      readonly kind: "power";
      readonly channelId: string;
      readonly id?: string;
      readonly user: RemoteUser;
      readonly level: number;
    }
  | {
      readonly kind: "topic";
      readonly channelId: string;
      readonly id?: string;
      readonly topic: string;
      readonly sender?: RemoteUser;
    };
