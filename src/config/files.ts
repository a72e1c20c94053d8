import {
  closeSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { LineCounter, parseDocument, visit, type Document } from "yaml";
import { ConfigError, type ConfigProblem } from "../errors.ts";

/** A parsed YAML file with what is needed to point at lines: the document keeps node offsets. */
export interface YamlFile {
  readonly file: string;
  readonly doc: Document.Parsed;
  readonly lines: LineCounter;
  /** The plain value (`{}` for an empty file). */
  readonly data: unknown;
}

/**
 * Reads and parses one YAML file. A missing file is a ConfigError with `notFound` as its whole
 * message; syntax errors are a ConfigError with one problem per error, each at its line.
 */
export function readYamlFile(file: string, notFound: string): YamlFile {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const message = code === "ENOENT" ? notFound : `cannot read ${file}: ${code ?? (error as Error).message}`;
    throw new ConfigError([{ file, message }]);
  }
  const lines = new LineCounter();
  // prettyErrors off: we print "file:line: message" ourselves, not yaml's multi-line excerpt.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    const problems: ConfigProblem[] = doc.errors.map((error) => {
      const { line, col } = lines.linePos(error.pos[0]);
      return { file, line, message: `YAML syntax error (column ${col}): ${error.message}` };
    });
    throw new ConfigError(problems);
  }
  let data: unknown;
  try {
    data = doc.toJS() ?? {};
  } catch (error) {
    // toJS throws on an alias whose anchor is not set before it, and on an alias bomb.
    const line = lines.linePos(aliasOffset(doc, (error as Error).message)).line;
    throw new ConfigError([{ file, line, message: `YAML alias error: ${(error as Error).message}` }]);
  }
  return { file, doc, lines, data };
}

/** Where the alias an error is about starts: the one it names, else the first one. */
function aliasOffset(doc: Document.Parsed, message: string): number {
  let offset: number | undefined;
  visit(doc, {
    Alias(_, node) {
      if (offset === undefined || message.endsWith(`: ${node.source}`)) offset = node.range?.[0];
      if (message.endsWith(`: ${node.source}`)) return visit.BREAK;
    },
  });
  return offset ?? 0;
}

/**
 * The files among `files` that group or others may read (a mode bit in 0044), with that mode as
 * four octal digits. A file that cannot be stat'ed is skipped (reading it reports that).
 */
export function readableByOthers(files: readonly string[]): Array<{ file: string; mode: string }> {
  const found: Array<{ file: string; mode: string }> = [];
  for (const file of files) {
    let mode: number;
    try {
      mode = statSync(file).mode;
    } catch {
      continue;
    }
    if ((mode & 0o044) !== 0) found.push({ file, mode: (mode & 0o7777).toString(8).padStart(4, "0") });
  }
  return found;
}

/**
 * Writes a file so that readers see the old content or the new, never half of either: a temp
 * file beside it (same file system), fsync, rename. The temp file is created with `mode` and
 * fchmod'ed to it (the umask can only narrow the open() mode, and the rename replaces any wider
 * mode the old file had).
 */
export function writeFileAtomic(file: string, text: string, mode: number): void {
  const folder = dirname(file);
  mkdirSync(folder, { recursive: true });
  const temp = join(folder, `.${basename(file)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const fd = openSync(temp, "wx", mode);
  try {
    fchmodSync(fd, mode);
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw error;
  }
  closeSync(fd);
  try {
    renameSync(temp, file);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
  syncFolder(folder);
}

// Makes the rename itself durable. Not every platform can open a directory; there it is skipped.
function syncFolder(folder: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(folder, "r");
    fsyncSync(fd);
  } catch {
    // best effort
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
