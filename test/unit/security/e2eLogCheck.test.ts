// The e2e stack fails a test file whose framework processes logged a secret (E2eStack.stop):
// these are the two pieces it uses, the secrets it looks for and the lines it flags.
import { secretLeaks, secretsIn } from "../../e2e/support/E2eStack.ts";

test("secrets are the config values under keys naming a secret or token", () => {
  const config = {
    homeserver: { url: "http://127.0.0.1:8008" },
    appservice: { asToken: "as_0123456789", hsToken: "hs_0123456789", id: "courier" },
    plugins: [{ name: "notify", config: { secret: "webhook-0123456789", room: "!r:x" } }, { name: "echo" }],
    short: { token: "abc" },
  };
  expect(secretsIn(config)).toEqual([
    ["appservice.asToken", "as_0123456789"],
    ["appservice.hsToken", "hs_0123456789"],
    ["plugins[0].config.secret", "webhook-0123456789"],
  ]);
});

test("a line holding a secret anywhere is flagged, with the secret replaced by its name", () => {
  const secrets = new Map([
    ["as_token", "as_0123456789abcdef"],
    ["plugins[0].config.secret", "webhook-0123456789"],
  ]);
  const processes = [
    { lines: ['{"msg":"courier started"}', '{"msg":"GET /x?access_token=as_0123456789abcdef"}'] },
    {
      lines: ["Error: bad secret webhook-0123456789 (webhook-0123456789)", '{"authorization":"[redacted]"}'],
    },
  ];
  expect(secretLeaks(processes, secrets)).toEqual([
    'process 1: {"msg":"GET /x?access_token=<as_token>"}',
    "process 2: Error: bad secret <plugins[0].config.secret> (<plugins[0].config.secret>)",
  ]);
  expect(secretLeaks([{ lines: ['{"msg":"fine"}'] }], secrets)).toEqual([]);
});
