import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ConfigError } from "../../../src/errors.ts";
import { loadConfig } from "../../../src/config/loadConfig.ts";

let dir: string;
beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), "courier-admin-config-"))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const MINIMAL = "homeserver:\n  url: https://matrix.example.org\n  serverName: example.org\n";
const load = (text: string, env: NodeJS.ProcessEnv = {}) => {
  const at = path.join(dir, "config.yaml");
  writeFileSync(at, text);
  return loadConfig(at, env);
};
const problems = (text: string, env: NodeJS.ProcessEnv = {}): string[] => {
  try {
    load(text, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message.split("\n").map((line) => line.replace(dir + path.sep, ""));
  }
  throw new Error("expected a ConfigError");
};

describe("admin section", () => {
  test("off by default; a token turns the dashboard on, from the file or COURIER_ADMIN_TOKEN", () => {
    expect(load(MINIMAL).admin).toEqual({ sessionMinutes: 720 });
    const token = "a3f1c9e07b2d4c6e8f0a1b2c3d4e5f60";
    expect(load(`${MINIMAL}admin:\n  token: "${token}"\n  sessionMinutes: 30\n`).admin).toEqual({
      token,
      sessionMinutes: 30,
    });
    expect(load(MINIMAL, { COURIER_ADMIN_TOKEN: token }).admin.token).toBe(token);
  });

  test("a short, placeholder or non-string token is refused without quoting it", () => {
    expect(problems(`${MINIMAL}admin:\n  token: short-secret\n`)).toEqual([
      "config.yaml:5: admin.token: is too short (12 characters; at least 16)",
    ]);
    expect(problems(`${MINIMAL}admin:\n  token: change_me_change_me_change_me\n`)).toEqual([
      "config.yaml:5: admin.token: is a placeholder",
    ]);
    expect(problems(`${MINIMAL}admin:\n  token: 12345678901234567890\n`)).toEqual([
      "config.yaml:5: admin.token: expected a string (quote it if it looks like a number)",
    ]);
    expect(problems(`${MINIMAL}admin:\n  tokn: x\n`)).toEqual([
      'config.yaml:5: admin.tokn: unknown key; did you mean "token"?',
    ]);
    expect(problems(MINIMAL, { COURIER_ADMIN_TOKEN: "tiny-secret" })).toEqual([
      "COURIER_ADMIN_TOKEN: admin.token: is too short (11 characters; at least 16)",
    ]);
  });
});
