// The import rule of docs/architecture.md, enforced: every import in src/ from one folder to
// another goes down the layers listed there. The layers are read from the document itself, so
// the rule is written once.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const SRC = path.join(ROOT, "src");

function layers(): string[][] {
  const page = readFileSync(path.join(ROOT, "docs/architecture.md"), "utf8");
  const block = /```layers\n([\s\S]*?)```/.exec(page)?.[1];
  if (!block) throw new Error("docs/architecture.md has no ```layers block");
  return block
    .trim()
    .split("\n")
    .map((line) => line.trim().split(/\s+/));
}

/** The unit of the rule a file belongs to: `ops/admin`, `store`, `errors.ts`… */
function unitOf(file: string, units: ReadonlySet<string>): string | undefined {
  const relative = path.relative(SRC, file).split(path.sep).join("/");
  const parts = relative.split("/");
  for (let n = parts.length; n >= 1; n--) {
    const candidate = parts.slice(0, n).join("/");
    if (units.has(candidate)) return candidate;
  }
  return undefined;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["'](\.{1,2}\/[^"']+)["']|import\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g;

/** Imports that break the layers, and files that belong to no layer. */
function check(files: ReadonlyArray<{ file: string; text: string }>, rows: string[][]) {
  const level = new Map(rows.flatMap((row, i) => row.map((unit) => [unit, i] as const)));
  const units = new Set(level.keys());
  const unplaced: string[] = [];
  const broken: string[] = [];
  let checked = 0;
  for (const { file, text } of files) {
    const name = path.relative(ROOT, file);
    if (name === "src/index.ts") continue;
    const from = unitOf(file, units);
    if (from === undefined) {
      unplaced.push(name);
      continue;
    }
    for (const match of text.matchAll(IMPORT)) {
      const specifier = (match[1] ?? match[2])!;
      const to = unitOf(path.resolve(path.dirname(file), specifier), units);
      if (to === undefined || to === from) continue;
      checked++;
      if (level.get(to)! <= level.get(from)!) broken.push(`${name} imports ${to} (${specifier})`);
    }
  }
  return { unplaced, broken, checked };
}

test("every import in src/ goes down the layers of docs/architecture.md", () => {
  const files = sources(SRC).map((file) => ({ file, text: readFileSync(file, "utf8") }));
  const { unplaced, broken, checked } = check(files, layers());
  expect(unplaced).toEqual([]);
  expect(broken).toEqual([]);
  expect(checked).toBeGreaterThan(50);
});

test("the check refuses an import up or sideways, and a file in no layer", () => {
  const file = (name: string, text: string) => ({ file: path.join(SRC, name), text });
  const { unplaced, broken } = check(
    [
      file("matrix/Up.ts", 'import { Outbox } from "../outbox/Outbox.ts";'),
      file("ops/admin/Sideways.ts", 'export { x } from "../metrics/CourierMetrics.ts";'),
      file(
        "outbox/Down.ts",
        'import type { RoomId } from "../ids.ts";\nimport("../matrix/MatrixClient.ts");',
      ),
      file("nowhere/Lost.ts", ""),
    ],
    layers(),
  );
  expect(broken).toEqual([
    "src/matrix/Up.ts imports outbox (../outbox/Outbox.ts)",
    "src/ops/admin/Sideways.ts imports ops/metrics (../metrics/CourierMetrics.ts)",
  ]);
  expect(unplaced).toEqual(["src/nowhere/Lost.ts"]);
});
