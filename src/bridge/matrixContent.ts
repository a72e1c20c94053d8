/** A Matrix message's content as the remote side needs it. */
export interface ParsedMatrixMessage {
  /** Plain text, the reply fallback removed. */
  readonly text: string;
  /** HTML, the reply fallback removed, when the event had it. */
  readonly html?: string;
  readonly emote: boolean;
  /** The event it replies to. */
  readonly replyToEvent?: string;
  /** The event it replaces (an edit): text and html are the new content. */
  readonly editOf?: string;
}

/**
 * Reads an `m.room.message` content: text (or a file's name), HTML, `/me`, reply and edit
 * relations. Resolves undefined for content with no text to bridge. Pure.
 */
export function fromMatrixContent(content: Record<string, unknown>): ParsedMatrixMessage | undefined {
  const relates = content["m.relates_to"] as
    { rel_type?: string; event_id?: string; "m.in_reply_to"?: { event_id?: string } } | undefined;
  const editOf = relates?.rel_type === "m.replace" ? relates.event_id : undefined;
  const source =
    editOf !== undefined && typeof content["m.new_content"] === "object" && content["m.new_content"] !== null
      ? (content["m.new_content"] as Record<string, unknown>)
      : content;
  const body = source.body;
  if (typeof body !== "string" || body.length === 0) return undefined;
  const replyToEvent = relates?.["m.in_reply_to"]?.event_id;
  const html =
    source.format === "org.matrix.custom.html" && typeof source.formatted_body === "string"
      ? source.formatted_body.replace(/^<mx-reply>[\s\S]*?<\/mx-reply>/, "")
      : undefined;
  return {
    text: replyToEvent ? stripReplyFallback(body) : body,
    ...(html !== undefined ? { html } : {}),
    emote: source.msgtype === "m.emote",
    ...(replyToEvent !== undefined && editOf === undefined ? { replyToEvent } : {}),
    ...(editOf !== undefined ? { editOf } : {}),
  };
}

/** Drops the `> <@user> quoted` lines and the blank line after them that older clients put first. */
function stripReplyFallback(body: string): string {
  const lines = body.split("\n");
  let i = 0;
  while (i < lines.length && lines[i]!.startsWith(">")) i++;
  if (i > 0 && lines[i] === "") i++;
  return i > 0 && i < lines.length ? lines.slice(i).join("\n") : body;
}
