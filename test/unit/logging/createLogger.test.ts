import { Writable } from "node:stream";
import { createLogger, wantsPretty } from "../../../src/logging/createLogger.ts";

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString("utf8"));
      callback();
    },
  });
  return { stream, text: () => chunks.join("") };
}

describe("createLogger", () => {
  test('"auto" is pretty only on a terminal; true and false are what they say', () => {
    expect(wantsPretty("auto", true)).toBe(true);
    expect(wantsPretty("auto", false)).toBe(false);
    expect(wantsPretty("auto", undefined)).toBe(false);
    expect(wantsPretty(true, false)).toBe(true);
    expect(wantsPretty(false, true)).toBe(false);
  });

  test("JSON lines by default, with tokens redacted", () => {
    const out = capture();
    createLogger({ destination: out.stream }).info({ hs_token: "hs-secret-value", n: 3 }, "hello");
    const line = JSON.parse(out.text()) as Record<string, unknown>;
    expect(line).toMatchObject({ msg: "hello", n: 3, hs_token: "[redacted]" });
  });

  test("pretty lines are not JSON, keep the message and fields, and hide the same secrets", () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, pretty: true }).child({ plugin: "echo" });
    log.info({ headers: { authorization: "Bearer as-secret-value" }, lane: "room:!a:x" }, "sent");
    const text = out.text();
    expect(() => JSON.parse(text)).toThrow();
    expect(text).toContain("INFO");
    expect(text).toContain("sent");
    expect(text).toContain("plugin");
    expect(text).toContain("room:!a:x");
    expect(text).not.toContain("as-secret-value");
    expect(text).toContain("[redacted]");
  });

  test("the level is honoured", () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, level: "warn" });
    log.info("quiet");
    log.warn("loud");
    expect(out.text()).not.toContain("quiet");
    expect(out.text()).toContain("loud");
  });
});
