import { requiredArgumentCount, usageReply } from "../../../src/plugins/commandUsage.ts";

describe("requiredArgumentCount", () => {
  test.each([
    [undefined, 0],
    ["", 0],
    ["<text>", 1],
    ["[name]", 0],
    ["<a> <b> [c]", 2],
    ["<text...>", 1],
    ["[NdM]", 0],
    ["list | cancel <id>", 1],
    ["cancel <id> | show <id> <field>", 2],
    // The shipped remind plugin's: `list` alone is a whole command.
    ["<10m | 2026-12-01 09:00> <text> | list | cancel <id>", 1],
    ["<when> <text>", 2],
    ["[--all] <room>", 1],
  ])("%j requires %i", (usage, count) => {
    expect(requiredArgumentCount(usage)).toBe(count);
  });
});

test("the reply names the command with its prefix and usage", () => {
  expect(usageReply("!", "echo", "<text>")).toBe("usage: !echo <text>");
});
