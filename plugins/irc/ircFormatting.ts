// IRC formatting codes (https://modern.ircdocs.horse/formatting) ↔ Matrix HTML. Pure functions.

const BOLD = "\x02";
const ITALIC = "\x1d";
const UNDERLINE = "\x1f";
const STRIKE = "\x1e";
const MONO = "\x11";
const COLOR = "\x03";
const REVERSE = "\x16";
const RESET = "\x0f";

/** The 16 standard mIRC colours. */
const PALETTE = [
  "#ffffff",
  "#000000",
  "#00007f",
  "#009300",
  "#ff0000",
  "#7f0000",
  "#9c009c",
  "#fc7f00",
  "#ffff00",
  "#00fc00",
  "#009393",
  "#00ffff",
  "#0000fc",
  "#ff00ff",
  "#7f7f7f",
  "#d2d2d2",
];

const TOGGLES: Record<string, string> = {
  [BOLD]: "b",
  [ITALIC]: "i",
  [UNDERLINE]: "u",
  [STRIKE]: "del",
  [MONO]: "code",
};
// Control characters are what these match: IRC formatting is made of them.
// eslint-disable-next-line no-control-regex
const CODES = /[\x02\x1d\x1f\x1e\x11\x16\x0f]|\x03(?:\d{1,2}(?:,\d{1,2})?)?/g;
// eslint-disable-next-line no-control-regex
const ANY_CODE = /[\x02\x1d\x1f\x1e\x11\x03\x16\x0f]/;

export const escapeHtml = (text: string): string =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** The text without formatting codes (the plain `body`). */
export function stripIrcFormatting(text: string): string {
  return text.replace(CODES, "");
}

/** HTML for a line with formatting codes, or undefined when it has none (send it plain). */
export function ircToHtml(text: string): string | undefined {
  if (!ANY_CODE.test(text)) return undefined;
  // Open elements, innermost last, with the tag that opened each (a colour keeps its attributes).
  const open: Array<{ tag: string; opening: string }> = [];
  let out = "";
  const closeAll = () => {
    while (open.length > 0) out += `</${open.pop()!.tag}>`;
  };
  const close = (tag: string) => {
    // Close down to it and reopen the ones above it, so the HTML stays nested.
    const above = open.splice(open.map((o) => o.tag).lastIndexOf(tag));
    for (let i = above.length - 1; i >= 0; i--) out += `</${above[i]!.tag}>`;
    for (const element of above.slice(1)) {
      open.push(element);
      out += element.opening;
    }
  };
  const push = (tag: string, opening = `<${tag}>`) => {
    open.push({ tag, opening });
    out += opening;
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    const toggled = TOGGLES[ch];
    if (toggled) {
      if (open.some((o) => o.tag === toggled)) close(toggled);
      else push(toggled);
    } else if (ch === RESET) closeAll();
    else if (ch === REVERSE) continue;
    else if (ch === COLOR) {
      if (open.some((o) => o.tag === "font")) close("font");
      const match = /^(\d{1,2})(?:,(\d{1,2}))?/.exec(text.slice(i + 1));
      if (!match) continue;
      i += match[0].length;
      const fg = PALETTE[Number(match[1])];
      const bg = match[2] === undefined ? undefined : PALETTE[Number(match[2])];
      if (fg) push("font", `<font data-mx-color="${fg}"${bg ? ` data-mx-bg-color="${bg}"` : ""}>`);
    } else out += escapeHtml(ch);
  }
  closeAll();
  return out;
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'", nbsp: " " };
const TAG_CODES: Record<string, string> = {
  b: BOLD,
  strong: BOLD,
  i: ITALIC,
  em: ITALIC,
  u: UNDERLINE,
  del: STRIKE,
  s: STRIKE,
  strike: STRIKE,
  code: MONO,
};

/**
 * IRC text for Matrix HTML: bold, italic, underline, strike-through and code become their codes,
 * line breaks and paragraphs become newlines, a link its text (and its address when that differs),
 * any other tag is dropped, entities decoded. The reply fallback (`<mx-reply>`) is dropped.
 */
export function htmlToIrc(html: string): string {
  let out = "";
  const links: string[] = [];
  const source = html.replace(/<mx-reply>[\s\S]*?<\/mx-reply>/g, "");
  const re = /<(\/?)([a-zA-Z0-9]+)([^>]*)>|([^<]+)/g;
  for (let m = re.exec(source); m; m = re.exec(source)) {
    if (m[4] !== undefined) {
      out += m[4].replace(
        /&(#?\w+);/g,
        (all, name: string) =>
          ENTITIES[name] ?? (name.startsWith("#") ? String.fromCodePoint(Number(name.slice(1))) : all),
      );
      continue;
    }
    const [, closing, rawTag, attrs] = m;
    const tag = rawTag!.toLowerCase();
    if (TAG_CODES[tag]) out += TAG_CODES[tag];
    else if (tag === "br") out += "\n";
    else if ((tag === "p" || tag === "div" || tag === "li") && closing) out += "\n";
    else if (tag === "a" && !closing) {
      links.push(/href="([^"]*)"/.exec(attrs ?? "")?.[1] ?? "");
      out += "\u0000";
    } else if (tag === "a" && closing) {
      const href = links.pop() ?? "";
      const start = out.lastIndexOf("\u0000");
      const label = out.slice(start + 1);
      // A pill (matrix.to user link) shows its name; any other link its address as well.
      const show =
        !href || href === label || href.startsWith("https://matrix.to/#/@") ? label : `${label} (${href})`;
      out = out.slice(0, start) + show;
    }
  }
  return out.replace(/\n+$/, "");
}
