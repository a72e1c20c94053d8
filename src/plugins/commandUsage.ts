/**
 * How many arguments a command's `usage` requires at the least. The usage is read the way help
 * texts write it: `<name>` is a required argument, `[name]` an optional one, a bare word is a
 * literal that must be typed (`list`), and `|` at the top level separates alternatives (the
 * fewest of them counts). Brackets may nest and hold alternatives of their own
 * (`<10m | 2026-12-01 09:00>` is one argument). No usage: nothing is required.
 */
export function requiredArgumentCount(usage: string | undefined): number {
  if (usage === undefined || usage.trim() === "") return 0;
  return Math.min(...topLevelAlternatives(usage).map(countRequired));
}

/** The reply to a command typed without what its usage requires: `usage: !echo <text>`. */
export function usageReply(prefix: string, name: string, usage: string): string {
  return `usage: ${prefix}${name} ${usage}`;
}

function topLevelAlternatives(usage: string): string[] {
  const alternatives: string[] = [];
  let depth = 0;
  let current = "";
  for (const ch of usage) {
    if (ch === "<" || ch === "[") depth++;
    else if ((ch === ">" || ch === "]") && depth > 0) depth--;
    if (ch === "|" && depth === 0) {
      alternatives.push(current);
      current = "";
    } else current += ch;
  }
  alternatives.push(current);
  return alternatives;
}

/** Top-level `<…>` groups and bare words; `[…]` groups and `...` count nothing. */
function countRequired(alternative: string): number {
  let count = 0;
  let depth = 0;
  let inWord = false;
  for (const ch of alternative) {
    if (ch === "<" || ch === "[") {
      if (depth === 0 && ch === "<") count++;
      depth++;
      inWord = false;
    } else if (ch === ">" || ch === "]") {
      depth = Math.max(0, depth - 1);
    } else if (depth === 0) {
      const wordChar = !/\s/.test(ch) && ch !== ".";
      if (wordChar && !inWord) count++;
      inWord = wordChar;
    }
  }
  return count;
}
