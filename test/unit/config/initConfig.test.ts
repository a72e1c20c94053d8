import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../../../src/errors.ts";
import { starterConfig, writeStarterConfig } from "../../../src/config/initConfig.ts";
import { loadConfig } from "../../../src/config/loadConfig.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "courier-init-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("starter config", () => {
  test("loads as written", () => {
    const at = path.join(dir, "config.yaml");
    writeStarterConfig(at);
    expect(statSync(at).mode & 0o777).toBe(0o600);
    const config = loadConfig(at, {});
    expect(config.homeserver).toEqual({ url: "http://127.0.0.1:8008", serverName: "localhost" });
    expect(config.appservice.namespaces.users).toEqual([{ regex: "@courier_.*:localhost", exclusive: true }]);
    expect(config.plugins.map((p) => p.name)).toEqual(["echo", "ping", "remind"]);
  });

  test("takes the homeserver; the server name is escaped in the namespace regex", () => {
    const at = path.join(dir, "config.yaml");
    writeStarterConfig(at, { homeserverUrl: "https://matrix.example.org", serverName: "example.org" });
    const config = loadConfig(at, {});
    expect(config.homeserver).toEqual({ url: "https://matrix.example.org", serverName: "example.org" });
    const [users] = config.appservice.namespaces.users;
    expect(users?.regex).toBe("@courier_.*:example\\.org");
    expect(new RegExp(users!.regex).test("@courier_x:exampleXorg")).toBe(false);
  });

  test("never overwrites an existing file without force", () => {
    const at = path.join(dir, "config.yaml");
    writeFileSync(at, "mine\n");
    expect(() => writeStarterConfig(at)).toThrow(ConfigError);
    expect(() => writeStarterConfig(at)).toThrow(`${at} already exists; use --force to overwrite it`);
    expect(readFileSync(at, "utf8")).toBe("mine\n");
    writeStarterConfig(at, { force: true });
    expect(readFileSync(at, "utf8")).toBe(starterConfig());
  });

  test("config.example.yaml is the starter config", () => {
    expect(readFileSync(path.join(ROOT, "config.example.yaml"), "utf8")).toBe(starterConfig());
  });
});
