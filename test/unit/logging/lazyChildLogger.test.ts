import { jest } from "@jest/globals";
import { Writable } from "node:stream";
import { pino } from "pino";
import { lazyChildLogger } from "../../../src/logging/lazyChildLogger.ts";

test("the child is made on first use only, and logs with its bindings", () => {
  const lines: string[] = [];
  const parent = pino(
    { level: "info" },
    new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }),
  );
  const child = jest.spyOn(parent, "child");
  const log = lazyChildLogger(parent, { eventId: "$e" });
  expect(child).not.toHaveBeenCalled();
  log.info({ n: 1 }, "hello");
  log.warn("again");
  expect(child).toHaveBeenCalledTimes(1);
  expect(lines.map((l) => JSON.parse(l))).toEqual([
    expect.objectContaining({ eventId: "$e", n: 1, msg: "hello" }),
    expect.objectContaining({ eventId: "$e", msg: "again", level: 40 }),
  ]);
  expect(log.isLevelEnabled("debug")).toBe(false);
  expect(log.child({ more: 1 }).bindings()).toEqual({ eventId: "$e", more: 1 });
});
