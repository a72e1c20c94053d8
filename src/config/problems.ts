import { isMap, isNode, isScalar, isSeq, type Node } from "yaml";
import type { z } from "zod";
import type { ConfigProblem } from "../errors.ts";
import type { YamlFile } from "./files.ts";
import { objectKeys, schemaAt } from "./schemaWalk.ts";

/** A value as a person reads it in a message: strings quoted, containers named. */
export function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "an empty value";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string")
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return String(value);
}

/** `["outbox", "rateBySender", "@a:b", "burst"]` → `outbox.rateBySender["@a:b"].burst`. */
export function formatKey(path: readonly PropertyKey[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(String(segment))) out += `${out ? "." : ""}${String(segment)}`;
    else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

/**
 * The line a path points at: the line of its last key (or list item). A key that is not in the
 * document (missing, or supplied by the environment) points at its nearest parent that is; the
 * whole document is line 1.
 */
export function lineOf(yaml: YamlFile, path: readonly PropertyKey[]): number {
  let node: unknown = yaml.doc.contents;
  let line = 1;
  for (const segment of path) {
    let next: { at: Node; value: unknown } | undefined;
    if (isMap(node)) {
      const pair = node.items.find((p) => keyText(p.key) === String(segment));
      if (pair && isNode(pair.key)) next = { at: pair.key, value: pair.value };
    } else if (isSeq(node) && typeof segment === "number") {
      const item = node.items[segment];
      if (item && typeof item === "object" && "range" in item) next = { at: item as Node, value: item };
    }
    const offset = next?.at.range?.[0];
    if (!next || offset === undefined) break;
    line = yaml.lines.linePos(offset).line;
    node = next.value;
  }
  return line;
}

/** A map key as `toJS` turns it into an object key: `~` is "", a collection its YAML text. */
function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return key.value === null ? "" : String(key.value);
  return isNode(key) ? String(key) : undefined;
}

const NOUNS: Record<string, string> = {
  number: "a number",
  int: "a whole number",
  string: "a string",
  boolean: "true or false",
  object: "a mapping (key: value)",
  record: "a mapping (key: value)",
  array: "a list",
};

type Issue = z.core.$ZodIssue;

/** What one zod issue means, in words a person acts on (never zod's own dump). */
function explain(issue: Issue, value: unknown): string {
  const got = `got ${describe(value)}`;
  switch (issue.code) {
    case "invalid_type": {
      const noun = NOUNS[issue.expected] ?? issue.expected;
      return value === undefined ? `missing (expected ${noun})` : `expected ${noun}, ${got}`;
    }
    case "too_small":
    case "too_big": {
      const small = issue.code === "too_small";
      const bound = Number(small ? issue.minimum : issue.maximum);
      const strictly = issue.inclusive === false;
      if (issue.origin === "string" && small && bound === 1) return `expected a non-empty string, ${got}`;
      const unit = issue.origin === "string" ? " characters" : issue.origin === "array" ? " items" : "";
      const relation = small ? (strictly ? "more than" : "at least") : strictly ? "less than" : "at most";
      return `expected ${relation} ${bound}${unit}, ${got}`;
    }
    case "invalid_value":
      return `expected ${issue.values.length === 1 ? "" : "one of "}${issue.values.map(describe).join(", ")}, ${got}`;
    case "invalid_union": {
      const expected = issue.errors
        .flat()
        .map((inner) =>
          inner.code === "invalid_value"
            ? inner.values.map(describe).join(" or ")
            : inner.code === "invalid_type"
              ? (NOUNS[inner.expected] ?? inner.expected)
              : inner.message,
        );
      return `expected ${[...new Set(expected)].join(" or ")}, ${got}`;
    }
    case "invalid_key":
      // The path ends at the key itself: the key is the value at fault.
      return `invalid key: ${issue.issues.map((inner) => explain(inner as Issue, issue.path.at(-1))).join("; ")}`;
    case "invalid_format":
      return `expected ${issue.format}${"pattern" in issue && issue.pattern ? ` matching ${issue.pattern}` : ""}, ${got}`;
    default:
      // Custom checks (schema.ts) already word their message with the value.
      return issue.message;
  }
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let current = data;
  for (const segment of path) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<PropertyKey, unknown>)[segment];
  }
  return current;
}

/** The candidate nearest to a misspelt `word`, if one is near enough to be what was meant. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(word.length / 3)) ? best.candidate : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        row[j - 1]! + 1,
        previous[j]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = row;
  }
  return previous[b.length]!;
}

/** "unknown key; did you mean ...?" from the keys the object at `path` allows. */
export function unknownKeyMessage(key: string, allowed: readonly string[]): string {
  const guess = closest(key, allowed);
  if (guess) return `unknown key; did you mean "${guess}"?`;
  return allowed.length > 0 ? `unknown key; expected one of: ${allowed.join(", ")}` : "unknown key";
}

export interface IssueContext {
  readonly yaml: YamlFile;
  readonly schema: z.ZodType;
  /** The validated input (after environment overrides): where the "got ..." values come from. */
  readonly data: unknown;
  /** Key paths (formatKey) set from the environment, with the variable that set each. */
  readonly fromEnv?: ReadonlyMap<string, string>;
}

/** One problem per issue, and one per unknown key: all of them, each at its line or variable. */
export function problemsFromIssues(issues: readonly Issue[], context: IssueContext): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const add = (path: readonly PropertyKey[], message: string) => {
    const key = formatKey(path);
    const variable = context.fromEnv?.get(key);
    if (variable) problems.push({ file: "environment", variable, key, message });
    else
      problems.push({
        file: context.yaml.file,
        line: lineOf(context.yaml, path),
        key: key || undefined,
        message,
      });
  };
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      const parent = schemaAt(context.schema, issue.path);
      const allowed = parent ? objectKeys(parent) : [];
      for (const key of issue.keys) add([...issue.path, key], unknownKeyMessage(key, allowed));
    } else {
      add(issue.path, explain(issue, valueAt(context.data, issue.path)));
    }
  }
  return problems;
}
