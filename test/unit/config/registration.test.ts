import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { ConfigError } from "../../../src/errors.ts";
import { loadConfig } from "../../../src/config/loadConfig.ts";
import {
  buildRegistration,
  checkTokens,
  loadRegistration,
  tokenProblem,
  writeRegistration,
  type Registration,
} from "../../../src/config/registration.ts";
import type { CourierConfig } from "../../../src/config/schema.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const GOOD_AS = "as_0123456789abcdef0123456789abcdef";
const GOOD_HS = "hs_0123456789abcdef0123456789abcdef";

let dir: string;
let config: CourierConfig;
let regPath: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "courier-registration-"));
  const configPath = path.join(dir, "config.yaml");
  writeFileSync(
    configPath,
    `homeserver: { url: "http://127.0.0.1:8008", serverName: localhost }
appservice:
  url: http://10.0.0.2:9000
  namespaces:
    users: [{ regex: "@courier_.*:localhost", exclusive: true }]
    aliases: [{ regex: "#courier_.*:localhost", exclusive: false }]
`,
  );
  config = loadConfig(configPath, {});
  regPath = config.appservice.registration;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const mode = (file: string) => statSync(file).mode & 0o777;
const readYaml = (file: string) => parse(readFileSync(file, "utf8")) as Record<string, unknown>;
const withAppservice = (patch: Partial<CourierConfig["appservice"]>): CourierConfig => ({
  ...config,
  appservice: { ...config.appservice, ...patch },
});

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("expected a ConfigError");
}

describe("buildRegistration", () => {
  test("has everything a homeserver needs, with fresh distinct tokens", () => {
    const a = buildRegistration(config);
    expect(a).toMatchObject({
      id: "courier",
      url: "http://10.0.0.2:9000",
      sender_localpart: "courier",
      namespaces: {
        users: [{ regex: "@courier_.*:localhost", exclusive: true }],
        aliases: [{ regex: "#courier_.*:localhost", exclusive: false }],
        rooms: [],
      },
      rate_limited: false,
      receive_ephemeral: true,
      push_ephemeral: true,
      "de.sorunome.msc2409.push_ephemeral": true,
    });
    expect(a.as_token).toMatch(/^[0-9a-f]{64}$/);
    expect(a.hs_token).toMatch(/^[0-9a-f]{64}$/);
    expect(a.as_token).not.toBe(a.hs_token);
    expect(buildRegistration(config).as_token).not.toBe(a.as_token);
  });

  test("keeps the tokens it is given", () => {
    const r = buildRegistration(config, { asToken: GOOD_AS, hsToken: GOOD_HS });
    expect([r.as_token, r.hs_token]).toEqual([GOOD_AS, GOOD_HS]);
  });
});

describe("writeRegistration", () => {
  test("writes mode 0600, no temp file left, and loadRegistration reads it back", () => {
    const result = writeRegistration(regPath, config);
    expect(result).toEqual({ path: regPath, tokens: "new" });
    expect(mode(regPath)).toBe(0o600);
    expect(readdirSync(dir).sort()).toEqual(["config.yaml", "registration.yaml"]);
    const text = readFileSync(regPath, "utf8");
    expect(text.startsWith("# Appservice registration for matrix-courier")).toBe(true);
    const loaded = loadRegistration(regPath);
    expect(loaded).toMatchObject({
      id: "courier",
      url: "http://10.0.0.2:9000",
      senderLocalpart: "courier",
      rateLimited: false,
      receiveEphemeral: true,
    });
    expect(() => checkTokens(config, loaded)).not.toThrow();
  });

  test("a rewrite keeps the tokens and updates the rest; force rotates them", () => {
    writeRegistration(regPath, config);
    const first = readYaml(regPath);
    const moved = withAppservice({ url: "http://10.0.0.3:9001" });
    expect(writeRegistration(regPath, moved)).toEqual({ path: regPath, tokens: "kept" });
    const second = readYaml(regPath);
    expect([second.as_token, second.hs_token]).toEqual([first.as_token, first.hs_token]);
    expect(second.url).toBe("http://10.0.0.3:9001");

    expect(writeRegistration(regPath, moved, { force: true })).toEqual({ path: regPath, tokens: "rotated" });
    const third = readYaml(regPath);
    expect(third.as_token).not.toBe(first.as_token);
    expect(third.hs_token).not.toBe(first.hs_token);
  });

  test("narrows a wider mode of an existing file to 0600", () => {
    writeFileSync(regPath, `as_token: ${GOOD_AS}\nhs_token: ${GOOD_HS}\n`);
    chmodSync(regPath, 0o644);
    expect(writeRegistration(regPath, config).tokens).toBe("kept");
    expect(mode(regPath)).toBe(0o600);
    expect(loadRegistration(regPath).asToken).toBe(GOOD_AS);
  });

  test("tokens pinned in the config are the ones written", () => {
    writeRegistration(regPath, withAppservice({ asToken: GOOD_AS, hsToken: GOOD_HS }));
    expect(readYaml(regPath)).toMatchObject({ as_token: GOOD_AS, hs_token: GOOD_HS });
  });

  test("refuses to replace placeholder or unreadable tokens without force", () => {
    writeFileSync(regPath, `as_token: CHANGE_ME\nhs_token: ${GOOD_HS}\n`);
    const message = messageOf(() => writeRegistration(regPath, config));
    expect(message).toContain(`${regPath}: as_token: is a placeholder`);
    expect(message).toContain("courier register --force");
    expect(readFileSync(regPath, "utf8")).toContain("CHANGE_ME");
    expect(writeRegistration(regPath, config, { force: true }).tokens).toBe("rotated");
    expect(loadRegistration(regPath).asToken).not.toContain("CHANGE_ME");

    writeFileSync(regPath, "as_token: [unclosed\n");
    expect(messageOf(() => writeRegistration(regPath, config))).toMatch(
      /registration\.yaml:\d+: YAML syntax error/,
    );
    expect(writeRegistration(regPath, config, { force: true }).tokens).toBe("rotated");
  });
});

describe("loadRegistration", () => {
  const write = (text: string) => writeFileSync(regPath, text);
  const base = (asToken = GOOD_AS, hsToken = GOOD_HS) =>
    `id: courier
url: http://127.0.0.1:9000
as_token: ${asToken}
hs_token: ${hsToken}
sender_localpart: courier
`;

  test("a missing file says how to write one", () => {
    expect(messageOf(() => loadRegistration(regPath))).toBe(
      `registration file not found: ${regPath} (run \`courier register\` to write one)`,
    );
  });

  test("missing keys are listed with the file and line", () => {
    write("id: courier\nas_token: " + GOOD_AS + "\n");
    expect(messageOf(() => loadRegistration(regPath)).split("\n")).toEqual([
      `${regPath}:1: url: missing (expected a string)`,
      `${regPath}:1: hs_token: missing (expected a string)`,
      `${regPath}:1: sender_localpart: missing (expected a string)`,
    ]);
  });

  test.each([
    ["empty", "''", "is empty"],
    ["CHANGE_ME", "CHANGE_ME", "is a placeholder"],
    ["changeme", "changeme-please-0123456789", "is a placeholder"],
    ["placeholder", "my-placeholder-token-0000", "is a placeholder"],
    ["xxx", "xxxxxxxxxxxxxxxxxxxxxxxx", "is a placeholder"],
    ["short", "abc123", "is too short (6 characters; at least 16)"],
  ])("refuses a placeholder token (%s), never quoting it", (_name, value, reason) => {
    write(base(value));
    const message = messageOf(() => loadRegistration(regPath));
    expect(message).toBe(
      `${regPath}:3: as_token: ${reason}; run \`courier register --force\` to write fresh tokens, then restart the homeserver`,
    );
  });

  test("the ephemeral flag is read from any of its spellings; rate_limited defaults to Synapse's true", () => {
    write(base() + "de.sorunome.msc2409.push_ephemeral: true\n");
    expect(loadRegistration(regPath)).toMatchObject({ receiveEphemeral: true, rateLimited: true });
    write(base());
    expect(loadRegistration(regPath).receiveEphemeral).toBe(false);
  });

  test("tokenProblem accepts generated and dev tokens", () => {
    expect(tokenProblem(GOOD_AS)).toBeUndefined();
    expect(tokenProblem("dev_as_56bf7331dec68b03750bcc77a87ad0ed")).toBeUndefined();
  });
});

describe("checkTokens", () => {
  const registration: Registration = {
    id: "courier",
    url: "http://127.0.0.1:9000",
    asToken: GOOD_AS,
    hsToken: GOOD_HS,
    senderLocalpart: "courier",
    namespaces: { users: [], aliases: [], rooms: [] },
    rateLimited: false,
    receiveEphemeral: true,
  };

  test("passes when the config pins nothing or the same tokens", () => {
    expect(() => checkTokens(config, registration)).not.toThrow();
    expect(() =>
      checkTokens(withAppservice({ asToken: GOOD_AS, hsToken: GOOD_HS }), registration),
    ).not.toThrow();
  });

  test("refuses mismatched tokens, one token for both, another id or bot user; never quotes a token", () => {
    const message = messageOf(() =>
      checkTokens(
        withAppservice({ asToken: "as_other_0123456789abcdef", id: "bridge", senderLocalpart: "bot" }),
        {
          ...registration,
          hsToken: GOOD_AS,
        },
      ),
    );
    expect(message.split("\n")).toEqual([
      `${regPath}: as_token: differs from appservice.asToken in the config (or COURIER_APPSERVICE_AS_TOKEN); remove it there, or set the registration's value`,
      `${regPath}: hs_token: is the same as as_token; run \`courier register --force\` to write fresh tokens, then restart the homeserver`,
      `${regPath}: id: is "courier" but appservice.id is "bridge"; run \`courier register\` to rewrite the registration, then restart the homeserver`,
      `${regPath}: sender_localpart: is "courier" but appservice.senderLocalpart is "bot"; run \`courier register\` to rewrite the registration, then restart the homeserver`,
    ]);
    expect(message).not.toContain(GOOD_AS);
    expect(message).not.toContain("as_other_");
  });

  test("refuses an admin.token or metrics.token equal to the hs_token or the as_token, naming the key", () => {
    const surfaces = (admin: string | undefined, metrics: string | undefined): CourierConfig => ({
      ...config,
      admin: { ...config.admin, token: admin },
      metrics: { ...config.metrics, token: metrics },
    });
    const message = messageOf(() =>
      checkTokens(surfaces(GOOD_HS, GOOD_AS), registration, "/etc/courier/config.yaml"),
    );
    expect(message.split("\n")).toEqual([
      "/etc/courier/config.yaml: admin.token: is the registration's hs_token (set here or by COURIER_ADMIN_TOKEN); give it a token of its own",
      "/etc/courier/config.yaml: metrics.token: is the registration's as_token (set here or by COURIER_METRICS_TOKEN); give it a token of its own",
    ]);
    expect(message).not.toContain(GOOD_AS);
    expect(message).not.toContain(GOOD_HS);
    expect(messageOf(() => checkTokens(surfaces(GOOD_AS, GOOD_HS), registration))).toContain(
      "config: admin.token: is the registration's as_token",
    );
    const own = "admin_0123456789abcdef0123456789abcdef";
    expect(() => checkTokens(surfaces(own, `${own}x`), registration)).not.toThrow();
  });

  test("a hs_token mismatch is reported too", () => {
    expect(messageOf(() => checkTokens(withAppservice({ hsToken: GOOD_AS }), registration))).toContain(
      "hs_token: differs from appservice.hsToken",
    );
  });
});

describe("the committed development files", () => {
  test("registration.yaml loads and agrees with config.example.yaml", () => {
    const example = loadConfig(path.join(ROOT, "config.example.yaml"), {});
    expect(example.appservice.registration).toBe(path.join(ROOT, "registration.yaml"));
    const registration = loadRegistration(example.appservice.registration);
    expect(() => checkTokens(example, registration)).not.toThrow();
    expect(registration).toMatchObject({
      id: "courier",
      url: "http://127.0.0.1:9000",
      senderLocalpart: "courier",
      namespaces: { users: [{ regex: "@courier_.*:localhost", exclusive: true }], aliases: [], rooms: [] },
      rateLimited: false,
      receiveEphemeral: true,
    });
    expect(registration.asToken).toMatch(/^dev_as_/);
    expect(registration.hsToken).toMatch(/^dev_hs_/);
    expect(readYaml(path.join(ROOT, "registration.yaml"))["de.sorunome.msc2409.push_ephemeral"]).toBe(true);
  });
});
