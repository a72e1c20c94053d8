// Progress reporters: a cli-progress bar on a terminal, pino lines with counts anywhere else.
import { Writable } from "node:stream";
import { createLogger } from "../../../src/logging/createLogger.ts";
import { terminalProgress } from "../../../src/cli/terminalProgress.ts";
import { logProgress } from "../../../src/outbox/progress.ts";

function sink(isTTY: boolean) {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _e, cb) {
      chunks.push(chunk.toString("utf8"));
      cb();
    },
  }) as unknown as NodeJS.WriteStream & { text(): string };
  Object.assign(stream, {
    isTTY,
    columns: 100,
    cursorTo: () => true,
    clearLine: () => true,
    moveCursor: () => true,
  });
  stream.text = () => chunks.join("");
  return stream;
}

test("not a terminal: JSON log lines with counts, no bar", () => {
  const logs = sink(false);
  const out = sink(false);
  const progress = terminalProgress(
    createLogger({ destination: logs, pretty: false }),
    out,
  )("draining the outbox");
  progress.start(10);
  progress.update(10);
  progress.stop();
  expect(out.text()).toBe("");
  const lines = logs
    .text()
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines[0]).toMatchObject({
    task: "draining the outbox",
    total: 10,
    msg: "draining the outbox: 10 to go",
  });
  expect(lines.at(-1)).toMatchObject({
    task: "draining the outbox",
    total: 10,
    msg: "draining the outbox: finished",
  });
});

test("a terminal: a bar with the counts, nothing logged", () => {
  const logs = sink(false);
  const out = sink(true);
  const progress = terminalProgress(
    createLogger({ destination: logs, pretty: false }),
    out,
  )("replaying backlog");
  progress.start(4);
  progress.update(2);
  progress.update(4);
  progress.stop();
  expect(out.text()).toContain("replaying backlog");
  expect(out.text()).toContain("4/4");
  expect(logs.text()).toBe("");
});

test("log progress is throttled: intermediate counts at most every `everyMs`", () => {
  const seen: Array<Record<string, unknown>> = [];
  const progress = logProgress(
    { info: (obj) => seen.push(obj as Record<string, unknown>) },
    "bulk retry",
    60_000,
  );
  progress.start(100);
  for (let i = 1; i <= 100; i++) progress.update(i);
  progress.stop();
  expect(seen).toEqual([
    { task: "bulk retry", total: 100 },
    { task: "bulk retry", total: 100 },
  ]);
});
