import { parseCommand } from "../../../src/plugins/parseCommand.ts";

describe("parseCommand", () => {
  test.each([
    ["!echo hi there", { name: "echo", args: ["hi", "there"], rest: "hi there" }],
    ["  !ECHO   hi", { name: "echo", args: ["hi"], rest: "hi" }],
    [
      '!remind 10m "buy milk" now',
      { name: "remind", args: ["10m", "buy milk", "now"], rest: '10m "buy milk" now' },
    ],
    ["!say 'single quoted' x", { name: "say", args: ["single quoted", "x"], rest: "'single quoted' x" }],
    ['!say a\\ b "c\\"d"', { name: "say", args: ["a b", 'c"d'], rest: 'a\\ b "c\\"d"' }],
    ['!say "unterminated quote', { name: "say", args: ["unterminated quote"], rest: '"unterminated quote' }],
    ['!say ""', { name: "say", args: [""], rest: '""' }],
    ["!help", { name: "help", args: [], rest: "" }],
    ["!echo multi\nline", { name: "echo", args: ["multi", "line"], rest: "multi\nline" }],
  ])("%j", (body, expected) => {
    expect(parseCommand(body, "!")).toEqual(expected);
  });

  test.each(["echo hi", "!", "! echo", "", "?echo hi"])("not a command: %j", (body) => {
    expect(parseCommand(body, "!")).toBeUndefined();
  });

  test("the prefix is configurable and may be long", () => {
    expect(parseCommand("bot: echo x", "bot: ")).toEqual({ name: "echo", args: ["x"], rest: "x" });
    expect(parseCommand("!echo x", "bot: ")).toBeUndefined();
  });
});
