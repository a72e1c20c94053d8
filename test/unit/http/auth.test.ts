import { bearerToken, secretMatches, verifyBearer } from "../../../src/http/auth.ts";

describe("the one HTTP auth check", () => {
  test.each([
    [undefined, undefined],
    ["", undefined],
    ["   ", undefined],
    ["Bearer abc", "abc"],
    ["bearer abc", "abc"],
    ["BEARER\tabc  ", "abc"],
    ["Bearer    abc", "abc"],
    ["Bearer", null],
    ["Bearer abc def", null],
    ["Basic abc", null],
    ["abc", null],
  ])("bearerToken(%j) is %j", (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });

  test("verifyBearer: missing, wrong or ok", () => {
    expect(verifyBearer(undefined, "s3cret")).toBe("missing");
    expect(verifyBearer("Token s3cret", "s3cret")).toBe("wrong");
    expect(verifyBearer("Bearer s3cre", "s3cret")).toBe("wrong");
    expect(verifyBearer("bearer s3cret", "s3cret")).toBe("ok");
  });

  test("secretMatches compares whole values of any length", () => {
    expect(secretMatches("a", "a")).toBe(true);
    expect(secretMatches("a", "ab")).toBe(false);
    expect(secretMatches("x".repeat(10_000), "x")).toBe(false);
    expect(secretMatches(Buffer.from("k"), "k")).toBe(true);
  });
});
