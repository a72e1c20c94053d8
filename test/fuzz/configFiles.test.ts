// Fuzzing config files: random YAML documents and random mutations of the shipped example.
// loadConfig either returns a config or throws a ConfigError whose every line names the file and
// line (and the key, unless the YAML itself is broken); never a TypeError or a stack trace. A
// mutation of one key is reported at that key, on a line of that key.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import fc from "fast-check";
import { isMap, isSeq, LineCounter, Pair, parseDocument, Scalar, stringify, type Document } from "yaml";
import { loadConfig } from "../../src/config/loadConfig.ts";
import { formatKey } from "../../src/config/problems.ts";
import { loadRegistration } from "../../src/config/registration.ts";
import { ConfigError, formatConfigProblem, type ConfigProblem } from "../../src/errors.ts";
import { fuzzParameters } from "./support/fuzzParameters.ts";

const EXAMPLE = readFileSync(fileURLToPath(new URL("../../config.example.yaml", import.meta.url)), "utf8");
const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), "courier-fuzz-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function write(text: string): string {
  const file = path.join(dir, `config${files++}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** Problems that are about the YAML itself (no key to name). */
const isYamlProblem = (p: ConfigProblem) =>
  /^(YAML (syntax|alias) error|expected a mapping \(key: value\))/.test(p.message);

/**
 * Loads `text` as a config file. Returns undefined when it is valid, else the ConfigError's
 * problems, after checking the invariants every error must keep.
 */
function load(text: string, load: (file: string) => unknown = (file) => loadConfig(file, {})) {
  const file = write(text);
  const lineCount = text.split("\n").length;
  let error: unknown;
  try {
    load(file);
    return undefined;
  } catch (caught) {
    error = caught;
  }
  const where = `for ${JSON.stringify(text.slice(0, 300))}: ${String(error).slice(0, 300)}`;
  expect({ where, isConfigError: error instanceof ConfigError }).toEqual({ where, isConfigError: true });
  const { problems, message } = error as ConfigError;
  expect({ where, count: problems.length > 0 }).toEqual({ where, count: true });
  for (const problem of problems) {
    const line = problem.line ?? 0;
    expect({
      where,
      file: problem.file,
      line: Number.isInteger(line) && line >= 1 && line <= lineCount + 1,
      key: isYamlProblem(problem) || (typeof problem.key === "string" && problem.key.length > 0),
      message: typeof problem.message === "string" && problem.message.length > 0,
    }).toEqual({ where, file, line: true, key: true, message: true });
    // One line per problem, "file:line: key: message", nothing a person cannot act on.
    expect(formatConfigProblem(problem)).toMatch(new RegExp(`^${escape(file)}:${line}: `));
    expect(problem.message).not.toMatch(/\n|\[object |undefined|\bat .+:\d+:\d+|TypeError|ZodError/);
  }
  expect(message.split("\n")).toHaveLength(problems.length);
  return problems;
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// ---- random YAML ----------------------------------------------------------------------------

/** Tokens YAML gives meaning to, so random text is near-YAML rather than plain noise. */
const yamlToken = fc.oneof(
  fc.constantFrom(
    ":",
    ": ",
    " ",
    "  ",
    "\n",
    "\n  ",
    "\n    ",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    '"',
    "#",
    "? ",
    "|",
    ">",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: ",
    "!!str ",
    "!!int ",
    "!!binary ",
    "!!set ",
    "!foo ",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
    "\t",
    "~",
    "null",
    "true",
    "no",
    ".inf",
    "0x1F",
    "1e309",
    "-0",
    "@",
    "`",
    "\\",
    "%",
  ),
  fc.constantFrom(
    "homeserver",
    "url",
    "serverName",
    "appservice",
    "bind",
    "port",
    "outbox",
    "rate",
    "plugins",
  ),
  fc.constantFrom("name", "namespaces", "users", "regex", "exclusive", "store", "path", "logging", "level"),
  fc.string({ unit: "grapheme", maxLength: 6 }),
);
const nearYaml = fc.array(yamlToken, { maxLength: 60 }).map((tokens) => tokens.join(""));

/** Well-formed YAML of random shape, sometimes under the real section names. */
const randomDocument = fc
  .oneof(
    fc.jsonValue(),
    fc.dictionary(
      fc.oneof(fc.constantFrom("homeserver", "appservice", "store", "outbox", "plugins"), fc.string()),
      fc.jsonValue({ maxDepth: 3 }),
    ),
  )
  .map((value) => stringify(value));

/** Billion laughs: each level aliases the one before many times. */
const aliasBomb = fc.integer({ min: 3, max: 8 }).map((levels) => {
  const lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
  for (let i = 1; i <= levels; i++)
    lines.push(
      `l${i}: &l${i} [${Array(9)
        .fill(`*l${i - 1}`)
        .join(", ")}]`,
    );
  return `${lines.join("\n")}\nhomeserver: *l${levels}\n`;
});

const deepNesting = fc
  .tuple(fc.integer({ min: 500, max: 5000 }), fc.constantFrom(["[", "]"], ["{a: ", "}"]))
  .map(([depth, [open, close]]) => `homeserver: ${open!.repeat(depth)}1${close!.repeat(depth)}\n`);

test("random YAML: a config, or a ConfigError naming file and line (and key)", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        { weight: 6, arbitrary: nearYaml },
        { weight: 3, arbitrary: randomDocument },
        { weight: 1, arbitrary: aliasBomb },
        { weight: 1, arbitrary: deepNesting },
      ),
      (text) => {
        load(text);
      },
    ),
    fuzzParameters("random YAML config", { numRuns: 300, timeLimitMs: 10_000 }),
  );
});

test("random YAML as a registration file: a ConfigError naming file and line, never a crash", () => {
  fc.assert(
    fc.property(fc.oneof(nearYaml, randomDocument, aliasBomb), (text) => {
      load(text, loadRegistration);
    }),
    fuzzParameters("random YAML registration", { numRuns: 150, timeLimitMs: 5000 }),
  );
});

// ---- mutations of a valid config ------------------------------------------------------------

type Path = (string | number)[];

/** Every key path and list index of the example, parents before children. */
function pathsOf(node: unknown, prefix: Path = []): Path[] {
  if (isMap(node)) {
    return node.items.flatMap((pair) => {
      const key = String((pair.key as { value?: unknown }).value);
      return [[...prefix, key], ...pathsOf(pair.value, [...prefix, key])];
    });
  }
  if (isSeq(node)) return node.items.flatMap((item, i) => [[...prefix, i], ...pathsOf(item, [...prefix, i])]);
  return [];
}

const examplePaths = pathsOf(parseDocument(EXAMPLE).contents);
const pluginNames = ["echo", "ping"];

/** Values that are often wrong somewhere: other types, bad URLs, odd numbers, unknown keys. */
const wrongish = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(
    "ftp://matrix.example.org",
    "http://",
    "matrix.example.org",
    "http://x/?q=1",
    "http://x/#f",
    "https://[::1",
    "",
    " ",
    "fast",
    "-1",
    "1e309",
    "@bot",
    "[a-",
    "(?<",
    "Echo",
    "9".repeat(400),
  ),
  fc.constantFrom(0, -1, 0.5, 65536, Infinity, Number.MAX_SAFE_INTEGER + 2, -0),
  fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.jsonValue({ maxDepth: 1 }), {
    minKeys: 1,
    maxKeys: 3,
  }),
);

type Mutation =
  | { readonly op: "set"; readonly at: Path; readonly value: unknown }
  | { readonly op: "delete"; readonly at: Path }
  | { readonly op: "add"; readonly at: Path; readonly key: Key; readonly value: unknown };

type Key = string | number | boolean | null;

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc
    .tuple(fc.constantFrom(...examplePaths), wrongish)
    // Another plugin's name makes the *other* entry the duplicate: reported there, not here.
    .filter(([, value]) => !pluginNames.includes(value as string))
    .map(([at, value]) => ({ op: "set" as const, at, value })),
  fc.constantFrom(...examplePaths).map((at) => ({ op: "delete" as const, at })),
  fc
    .tuple(
      fc.constantFrom([], ...examplePaths),
      // Plain scalars too: `~:` is a null key, which the config sees as "".
      fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.constantFrom<Key>(null, 1, true, 2.5, "<<")),
      wrongish,
    )
    .map(([at, key, value]) => ({ op: "add" as const, at, key, value })),
);

type Ranged = { range?: [number, number, number] } | null | undefined;

/** The key/value pair (or list item) a path segment names, keys compared as the config sees them. */
function child(node: unknown, segment: string | number): { key?: Ranged; value: Ranged } | undefined {
  if (isMap(node)) {
    const pair = node.items.find((p) => {
      const value = (p.key as { value?: unknown }).value;
      return (value === null ? "" : String(value)) === String(segment);
    });
    return pair && { key: pair.key as Ranged, value: pair.value as Ranged };
  }
  if (isSeq(node) && typeof segment === "number" && segment < node.items.length) {
    return { value: node.items[segment] as Ranged };
  }
  return undefined;
}

/**
 * The longest prefix of `at` that is in the document, and the 1-based lines its key and value
 * span (the whole file for the root).
 */
function nearestLines(doc: Document.Parsed, lines: LineCounter, at: Path): [number, number] {
  let node: unknown = doc.contents;
  let span: [number, number] = [1, Number.MAX_SAFE_INTEGER];
  for (const segment of at) {
    const found = child(node, segment);
    const start = (found?.key ?? found?.value)?.range?.[0];
    if (!found || start === undefined) break;
    const end = found.value?.range?.[1] ?? start + 1;
    span = [lines.linePos(start).line, lines.linePos(Math.max(start, end - 1)).line];
    node = found.value;
  }
  return span;
}

test("one mutated key of a valid config: loads, or a ConfigError at that key, on its lines", () => {
  expect(load(EXAMPLE)).toBeUndefined();
  fc.assert(
    fc.property(mutation, (m) => {
      const doc = parseDocument(EXAMPLE);
      const target = m.op === "add" ? [...m.at, m.key === null ? "" : String(m.key)] : m.at;
      if (m.op === "set") doc.setIn(m.at, doc.createNode(m.value));
      else if (m.op === "delete") doc.deleteIn(m.at);
      else {
        const parent = m.at.length === 0 ? doc.contents : doc.getIn(m.at, true);
        if (!isMap(parent)) return; // a list or a scalar takes no key
        if (parent.has(m.key)) return; // a duplicate key is the YAML test's business
        parent.add(new Pair(new Scalar(m.key), doc.createNode(m.value)));
      }
      const text = doc.toString();
      const problems = load(text);
      if (problems === undefined) return;
      // The problem is where the change is: at the key, under it, or (a missing key) at its parent.
      const key = formatKey(target);
      const counter = new LineCounter();
      const span = nearestLines(parseDocument(text, { lineCounter: counter }), counter, target);
      const related = problems.filter(
        (p) =>
          p.key !== undefined &&
          (p.key === key ||
            p.key.startsWith(`${key}.`) ||
            p.key.startsWith(`${key}[`) ||
            key.startsWith(`${p.key}.`) ||
            key.startsWith(`${p.key}[`)),
      );
      const where = `${m.op} ${key} = ${JSON.stringify(m.op === "delete" ? null : m.value)}: ${problems.map(formatConfigProblem).join(" | ")}`;
      expect({ where, related: related.length > 0 }).toEqual({ where, related: true });
      const onItsLines = related.some((p) => p.line! >= span[0] && p.line! <= span[1]);
      expect({ where, span, onItsLines }).toEqual({ where, span, onItsLines: true });
    }),
    fuzzParameters("config mutations", { numRuns: 300, timeLimitMs: 10_000 }),
  );
});

/** Character-level damage: cut, insert a token, duplicate or re-indent a line. */
const damage = fc.oneof(
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 40 })).map(([at, length]) => (text: string) => {
    const start = at % text.length;
    return text.slice(0, start) + text.slice(start + length);
  }),
  fc.tuple(fc.nat(), yamlToken).map(([at, token]) => (text: string) => {
    const start = at % text.length;
    return text.slice(0, start) + token + text.slice(start);
  }),
  fc.tuple(fc.nat(), fc.constantFrom("dup", " ", "  ", "\t", "-")).map(([at, how]) => (text: string) => {
    const lines = text.split("\n");
    const i = at % lines.length;
    if (how === "dup") lines.splice(i, 0, lines[i]!);
    else lines[i] = how + lines[i];
    return lines.join("\n");
  }),
);

test("character-level damage to a valid config: loads, or a ConfigError naming file and line", () => {
  fc.assert(
    fc.property(fc.array(damage, { minLength: 1, maxLength: 4 }), (edits) => {
      load(edits.reduce((text, edit) => edit(text), EXAMPLE));
    }),
    fuzzParameters("config damage", { numRuns: 300, timeLimitMs: 10_000 }),
  );
});

test("`courier start` with a damaged config exits 2 with one line per problem and no stack trace", async () => {
  // A damage the fuzzer likes: a flow mapping left open, and a wrong type further down.
  const bad = EXAMPLE.replace(
    "bind: { host: 127.0.0.1, port: 9000 }",
    "bind: { host: 127.0.0.1, port: 9000",
  ).replace("level: info", "level: [info]");
  const file = write(bad);
  const result = await promisify(execFile)(process.execPath, [CLI, "start", "--config", file], {
    cwd: dir,
  }).then(
    () => ({ code: 0, stderr: "" }),
    (error: { code: number; stderr: string }) => error,
  );
  expect(result.code).toBe(2);
  const lines = result.stderr.trim().split("\n");
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) expect(line).toMatch(new RegExp(`^(courier: )?${escape(file)}:\\d+: `));
  expect(result.stderr).not.toMatch(/\n\s+at |TypeError|node:internal/);
}, 30_000);
