/** A command found in a message body: `!name arg "quoted arg"`. */
export interface ParsedCommand {
  readonly name: string;
  readonly args: string[];
  /** Everything after the command name, as typed (for commands that take free text). */
  readonly rest: string;
}

/**
 * Parses `<prefix><name> args…`; undefined when the body is not a command. Arguments split on
 * whitespace; double or single quotes group words, and a backslash escapes the next character.
 * An unterminated quote takes the rest of the line.
 */
export function parseCommand(body: string, prefix: string): ParsedCommand | undefined {
  const text = body.trimStart();
  if (!text.startsWith(prefix)) return undefined;
  const match = /^(\S+)(?:\s+([\s\S]*))?$/.exec(text.slice(prefix.length));
  if (!match || !match[1]) return undefined;
  const rest = (match[2] ?? "").trim();
  return { name: match[1].toLowerCase(), args: splitArgs(rest), rest };
}

function splitArgs(text: string): string[] {
  const args: string[] = [];
  let current = "";
  let quote: string | undefined;
  let inArg = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (ch === "\\" && i + 1 < text.length) {
      current += text[++i];
      inArg = true;
    } else if (quote) {
      if (ch === quote) quote = undefined;
      else current += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inArg = true;
    } else if (/\s/.test(ch)) {
      if (inArg) args.push(current);
      current = "";
      inArg = false;
    } else {
      current += ch;
      inArg = true;
    }
  }
  if (inArg) args.push(current);
  return args;
}
