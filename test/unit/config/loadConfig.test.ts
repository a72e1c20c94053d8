import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ConfigError } from "../../../src/errors.ts";
import { loadConfig } from "../../../src/config/loadConfig.ts";
import { envName } from "../../../src/config/env.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "courier-config-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const MINIMAL = `homeserver:
  url: https://matrix.example.org
  serverName: example.org
`;

/** Writes `text` as config.yaml in the temp folder and returns its path. */
function file(text: string, name = "config.yaml"): string {
  const at = path.join(dir, name);
  mkdirSync(path.dirname(at), { recursive: true });
  writeFileSync(at, text);
  return at;
}

/** The ConfigError's message lines, with the temp folder cut to "config.yaml". */
function problems(at: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    loadConfig(at, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe("COURIER_CONFIG");
    return (error as Error).message.split("\n").map((line) => line.replace(at, path.basename(at)));
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  test("a minimal file loads with every default applied and paths made absolute", () => {
    const config = loadConfig(file(MINIMAL), {});
    expect(config).toEqual({
      homeserver: { url: "https://matrix.example.org", serverName: "example.org" },
      appservice: {
        id: "courier",
        registration: path.join(dir, "registration.yaml"),
        bind: { host: "127.0.0.1", port: 9000 },
        url: "http://127.0.0.1:9000",
        senderLocalpart: "courier",
        namespaces: { users: [], aliases: [], rooms: [] },
        rateLimited: false,
        receiveEphemeral: true,
        trustedProxies: [],
        maxBodyBytes: 33_554_432,
        allowQueryToken: false,
      },
      store: {
        leaseSeconds: 5,
        path: path.join(dir, "data", "courier.sqlite"),
        synchronous: "NORMAL",
        retentionDays: 7,
      },
      encryption: {
        enabled: false,
        ghosts: false,
        keyWaitMs: 5000,
        path: path.join(dir, "data", "crypto.sqlite"),
        storeKeyFile: path.join(dir, "data", "crypto.key"),
      },
      outbox: {
        maxConcurrency: 32,
        rate: { perSecond: 50, burst: 100 },
        retry: { baseMs: 250, capMs: 60_000 },
        requestTimeoutMs: 30_000,
        ghostDevices: true,
      },
      dispatcher: { maxConcurrency: 16, handlerTimeoutMs: 30_000, maxAttempts: 5 },
      logging: { level: "info", pretty: "auto" },
      admin: { sessionMinutes: 720 },
      metrics: { enabled: true },
      plugins: [],
    });
  });

  test("appservice.url defaults to the bind address, 0.0.0.0 reached as 127.0.0.1", () => {
    const config = loadConfig(file(`${MINIMAL}appservice:\n  bind: { host: 0.0.0.0, port: 9123 }\n`), {});
    expect(config.appservice.url).toBe("http://127.0.0.1:9123");
  });

  test("a section with every key commented out means its defaults", () => {
    const config = loadConfig(file(`${MINIMAL}dispatcher:\n  # maxAttempts: 9\nplugins:\n`), {});
    expect(config.dispatcher.maxAttempts).toBe(5);
    expect(config.plugins).toEqual([]);
  });

  test("relative paths resolve against the config file's folder, not the current directory", () => {
    const at = file(
      `${MINIMAL}appservice:
  registration: ../secrets/registration.yaml
store:
  path: state/courier.sqlite
plugins:
  - name: local
    module: ./plugins/local/index.ts
  - name: from-npm
    module: courier-plugin-npm
  - name: echo
`,
      "etc/courier/config.yaml",
    );
    const config = loadConfig(at, {});
    expect(config.appservice.registration).toBe(path.join(dir, "etc", "secrets", "registration.yaml"));
    expect(config.store.path).toBe(path.join(dir, "etc", "courier", "state", "courier.sqlite"));
    expect(config.plugins.map((p) => p.module)).toEqual([
      path.join(dir, "etc", "courier", "plugins", "local", "index.ts"),
      "courier-plugin-npm",
      undefined,
    ]);
  });

  test("a missing file says how to make one", () => {
    const at = path.join(dir, "nope.yaml");
    expect(problems(at)).toEqual(["config file not found: nope.yaml (run `courier init` to write one)"]);
  });

  test("wrong type: file, line and key", () => {
    const at = file(`${MINIMAL}outbox:
  rate:
    perSecond: fast
`);
    expect(problems(at)).toEqual(['config.yaml:6: outbox.rate.perSecond: expected a number, got "fast"']);
  });

  test("unknown key (a typo) suggests the key meant", () => {
    const at = file(`${MINIMAL}outbox:\n  maxConcurency: 8\n`);
    expect(problems(at)).toEqual([
      'config.yaml:5: outbox.maxConcurency: unknown key; did you mean "maxConcurrency"?',
    ]);
  });

  test("bad URL", () => {
    const at = file(`homeserver:\n  url: ftp://matrix.example.org\n  serverName: example.org\n`);
    expect(problems(at)).toEqual([
      'config.yaml:2: homeserver.url: expected an http(s) URL such as http://127.0.0.1:8008 (no query or fragment), got "ftp://matrix.example.org"',
    ]);
  });

  test("bad regex in a namespace", () => {
    const at = file(`${MINIMAL}appservice:
  namespaces:
    users:
      - regex: "@bridge_[a-z:example.org"
        exclusive: true
`);
    expect(problems(at)).toEqual([
      'config.yaml:7: appservice.namespaces.users[0].regex: expected a valid regular expression, got "@bridge_[a-z:example.org" (Unterminated character class)',
    ]);
  });

  test("trustedProxies: addresses, CIDR ranges and express's named ranges; anything else names the entry", () => {
    const good = file(`${MINIMAL}appservice:
  trustedProxies: [loopback, 10.0.0.0/8, "::1", "fd00::/8", 192.0.2.1]
`);
    expect(loadConfig(good, {}).appservice.trustedProxies).toEqual([
      "loopback",
      "10.0.0.0/8",
      "::1",
      "fd00::/8",
      "192.0.2.1",
    ]);
    const bad = file(`${MINIMAL}appservice:
  trustedProxies:
    - 10.0.0.0/8
    - proxy.example.org
    - 10.0.0.0/33
`);
    expect(problems(bad)).toEqual([
      'config.yaml:7: appservice.trustedProxies[1]: expected an IP address, a CIDR range (10.0.0.0/8), or loopback, linklocal, uniquelocal, got "proxy.example.org"',
      'config.yaml:8: appservice.trustedProxies[2]: expected an IP address, a CIDR range (10.0.0.0/8), or loopback, linklocal, uniquelocal, got "10.0.0.0/33"',
    ]);
  });

  test("duplicate plugin names point at the second one", () => {
    const at = file(`${MINIMAL}plugins:
  - name: echo
  - name: ping
  - name: echo
    config: { prefix: ">" }
`);
    expect(problems(at)).toEqual([
      'config.yaml:7: plugins[2].name: duplicate plugin name "echo" (also plugins[0]); names must be unique',
    ]);
  });

  test("YAML syntax error with its line", () => {
    const at = file(`${MINIMAL}outbox:\n  rate: { perSecond: 5\n  retry: {}\n`);
    const lines = problems(at);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^config\.yaml:6: YAML syntax error \(column \d+\): /);
  });

  test("a duplicated key is a syntax error at the second one", () => {
    const at = file(`${MINIMAL}logging:\n  level: debug\n  level: info\n`);
    expect(problems(at)).toEqual(["config.yaml:6: YAML syntax error (column 3): Map keys must be unique"]);
  });

  test("a missing required key points at its parent's line; a missing section at line 1", () => {
    expect(problems(file(`homeserver:\n  url: http://127.0.0.1:8008\n`))).toEqual([
      "config.yaml:1: homeserver.serverName: missing (expected a string)",
    ]);
    expect(problems(file(`logging: { level: debug }\n`))).toEqual([
      "config.yaml:1: homeserver: missing (expected a mapping (key: value))",
    ]);
  });

  test("every problem is reported at once, in file order", () => {
    const at = file(`homeserver:
  url: http://127.0.0.1:8008
  serverName: https://example.org
appservice:
  bind: { port: 70000 }
  rateLimited: "no"
outbox:
  maxConcurency: 8
  rateBySender:
    bot: { perSecond: 5 }
logging: { level: loud, pretty: maybe }
plugins:
  - name: Echo
  - name: ping
    config: []
  - name: ping
stroe: {}
`);
    expect(problems(at)).toEqual([
      'config.yaml:3: homeserver.serverName: expected a server name such as "example.org" (no scheme, no path), got "https://example.org"',
      "config.yaml:5: appservice.bind.port: expected at most 65535, got 70000",
      'config.yaml:6: appservice.rateLimited: expected true or false, got "no"',
      'config.yaml:8: outbox.maxConcurency: unknown key; did you mean "maxConcurrency"?',
      'config.yaml:10: outbox.rateBySender.bot: invalid key: expected a user id such as "@bot:example.org", got "bot"',
      'config.yaml:11: logging.level: expected one of "fatal", "error", "warn", "info", "debug", "trace", "silent", got "loud"',
      'config.yaml:11: logging.pretty: expected "auto", true or false, got "maybe"',
      'config.yaml:13: plugins[0].name: expected a name of lowercase letters, digits and dashes, starting with a letter, got "Echo"',
      "config.yaml:15: plugins[1].config: expected a mapping (key: value), got a list",
      'config.yaml:16: plugins[2].name: duplicate plugin name "ping" (also plugins[1]); names must be unique',
      'config.yaml:17: stroe: unknown key; did you mean "store"?',
    ]);
  });

  test("an alias without its anchor, or an alias bomb, is a ConfigError at the alias (was a ReferenceError)", () => {
    expect(problems(file(`${MINIMAL}logging: *nowhere\n`))).toEqual([
      "config.yaml:4: YAML alias error: Unresolved alias (the anchor must be set before the alias): nowhere",
    ]);
    const levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i <= 4; i++)
      levels.push(
        `a${i}: &a${i} [${Array(9)
          .fill(`*a${i - 1}`)
          .join(", ")}]`,
      );
    expect(problems(file(`${levels.join("\n")}\n`))).toEqual([
      expect.stringMatching(/^config\.yaml:\d: YAML alias error: Excessive alias count/),
    ]);
  });

  test("a file that is not a mapping says so, instead of 'homeserver: missing'", () => {
    expect(problems(file("- homeserver\n- store\n"))).toEqual([
      "config.yaml:1: expected a mapping (key: value) at the top, got a list",
    ]);
  });

  test("a key named like an Object.prototype method is an unknown key, not a crash", () => {
    expect(problems(file(`${MINIMAL}outbox:\n  valueOf: { a: 1 }\n  constructor: 2\n`))).toEqual([
      expect.stringMatching(/^config\.yaml:5: outbox\.valueOf: unknown key/),
      expect.stringMatching(/^config\.yaml:6: outbox\.constructor: unknown key/),
    ]);
  });

  test("a null key (`~:`) is reported on its own line", () => {
    expect(problems(file(`${MINIMAL}~: 1\n`))).toEqual([
      'config.yaml:4: [""]: unknown key; expected one of: homeserver, appservice, store, encryption, outbox, dispatcher, logging, admin, metrics, plugins',
    ]);
  });

  test("a token in the config is never quoted in a message", () => {
    const lines = problems(file(`${MINIMAL}appservice:\n  asToken: 123456789012345678901234\n`));
    expect(lines).toEqual([
      "config.yaml:5: appservice.asToken: expected a string (quote it if it looks like a number)",
    ]);
  });
});

describe("environment overrides", () => {
  test("variable names are COURIER_ + the key path in SCREAMING_SNAKE_CASE", () => {
    expect(envName(["outbox", "rate", "perSecond"])).toBe("COURIER_OUTBOX_RATE_PER_SECOND");
    expect(envName(["appservice", "asToken"])).toBe("COURIER_APPSERVICE_AS_TOKEN");
  });

  test("numbers, booleans, strings and nested keys; sections created as needed", () => {
    const config = loadConfig(file(MINIMAL), {
      COURIER_HOMESERVER_URL: "http://synapse:8008",
      COURIER_APPSERVICE_BIND_PORT: "9100",
      COURIER_APPSERVICE_RATE_LIMITED: "true",
      COURIER_OUTBOX_RATE_PER_SECOND: "12.5",
      COURIER_LOGGING_LEVEL: "debug",
      COURIER_LOGGING_PRETTY: "false",
      // Digits only, but a string setting: stays a string.
      COURIER_APPSERVICE_AS_TOKEN: "12345678901234567890",
      // Not settings: ignored.
      COURIER_FAULT: "kill-after-journal",
      PATH: "/usr/bin",
    });
    expect(config.homeserver.url).toBe("http://synapse:8008");
    expect(config.appservice.bind.port).toBe(9100);
    expect(config.appservice.url).toBe("http://127.0.0.1:9100");
    expect(config.appservice.rateLimited).toBe(true);
    expect(config.outbox.rate).toEqual({ perSecond: 12.5, burst: 100 });
    expect(config.logging).toEqual({ level: "debug", pretty: false });
    expect(config.appservice.asToken).toBe("12345678901234567890");
  });

  test("the environment wins over the file; an empty variable counts as unset", () => {
    const at = file(`${MINIMAL}dispatcher:\n  maxAttempts: 3\n  maxConcurrency: 4\n`);
    const config = loadConfig(at, {
      COURIER_DISPATCHER_MAX_ATTEMPTS: "7",
      COURIER_DISPATCHER_MAX_CONCURRENCY: "",
    });
    expect(config.dispatcher.maxAttempts).toBe(7);
    expect(config.dispatcher.maxConcurrency).toBe(4);
  });

  test("a relative path from the environment resolves against the config folder too", () => {
    const config = loadConfig(file(MINIMAL), { COURIER_STORE_PATH: "db/x.sqlite" });
    expect(config.store.path).toBe(path.join(dir, "db", "x.sqlite"));
  });

  test("store.url chooses PostgreSQL, from the file or COURIER_STORE_URL; anything but a postgres URL names the key", () => {
    expect(loadConfig(file(MINIMAL), {}).store.url).toBeUndefined();
    const fromEnv = loadConfig(file(MINIMAL), { COURIER_STORE_URL: "postgres://courier:pw@db/courier" });
    expect(fromEnv.store.url).toBe("postgres://courier:pw@db/courier");
    const bad = file(`${MINIMAL}store:\n  url: mysql://db/courier\n`);
    expect(problems(bad)).toEqual([
      'config.yaml:5: store.url: expected a postgres:// or postgresql:// URL, got "mysql://db/courier"',
    ]);
  });

  test("a bad value names the variable instead of a line; a misspelt variable is reported", () => {
    const at = file(`${MINIMAL}outbox:\n  rate: { perSecond: 5 }\n`);
    expect(
      problems(at, {
        COURIER_OUTBOX_RATE_PER_SECOND: "fast",
        COURIER_APPSERVICE_BIND_PORT: "-1",
        COURIER_OUTBOX_MAX_CONCURENCY: "4",
      }),
    ).toEqual([
      "COURIER_OUTBOX_MAX_CONCURENCY: not a setting; did you mean COURIER_OUTBOX_MAX_CONCURRENCY?",
      "COURIER_APPSERVICE_BIND_PORT: appservice.bind.port: expected at least 0, got -1",
      'COURIER_OUTBOX_RATE_PER_SECOND: outbox.rate.perSecond: expected a number, got "fast"',
    ]);
    expect(() => loadConfig(at, { COURIER_OUTBOX_RATE_PER_SECOND: "fast" })).toThrow(
      expect.objectContaining({
        problems: [
          {
            file: "environment",
            variable: "COURIER_OUTBOX_RATE_PER_SECOND",
            key: "outbox.rate.perSecond",
            message: 'expected a number, got "fast"',
          },
        ],
      }),
    );
  });
});
