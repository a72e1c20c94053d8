// The hs_token and webhook secrets are compared in constant time: both sides are hashed
// (SHA-256) and the digests compared with crypto.timingSafeEqual, so neither the content nor
// the length of a presented token changes the time the comparison takes. This watches the
// real node:crypto calls the code makes.
import { jest } from "@jest/globals";
import type * as Crypto from "node:crypto";

const actual = await import("node:crypto");
const timingSafeEqual = jest.fn((a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) =>
  actual.timingSafeEqual(a, b),
);
jest.unstable_mockModule(
  "node:crypto",
  () => ({ ...actual, default: actual, timingSafeEqual }) as typeof Crypto,
);

const { createAppserviceApp, listen } = await import("../../../src/inbound/AppserviceServer.ts");
const { verifyBearer, verifyHubSignature, hubSignature } =
  await import("../../../src/plugins/webhookAuth.ts");
const { SqliteInboundJournal } = await import("../../../src/store/sqlite/SqliteInboundJournal.ts");
const { pino } = await import("pino");

const sha256 = (value: string | Buffer) => actual.createHash("sha256").update(value).digest();
const HS_TOKEN = "hs_token_0123456789abcdef0123456789";

/** Every call since the last reset, as hex pairs. */
const calls = () =>
  timingSafeEqual.mock.calls.map(([a, b]) => [
    Buffer.from(a as Uint8Array).toString("hex"),
    Buffer.from(b as Uint8Array).toString("hex"),
  ]);

describe("hs_token", () => {
  test("is compared with timingSafeEqual on SHA-256 digests, whatever the presented token's length", async () => {
    const app = createAppserviceApp({
      hsToken: HS_TOKEN,
      journal: new SqliteInboundJournal({ path: ":memory:" }),
      logger: pino({ level: "silent" }),
    });
    const server = await listen(app, { port: 0 });
    try {
      const presented = [
        HS_TOKEN,
        "x",
        HS_TOKEN.slice(0, -1),
        `${HS_TOKEN}x`,
        "y".repeat(HS_TOKEN.length),
        "z".repeat(8000),
      ];
      for (const token of presented) {
        timingSafeEqual.mockClear();
        const res = await fetch(
          `http://127.0.0.1:${server.port}/_matrix/app/v1/transactions/t${token.length}`,
          {
            method: "PUT",
            headers: { authorization: `Bearer ${token}` },
            body: "{}",
          },
        );
        expect(res.status).toBe(token === HS_TOKEN ? 200 : 403);
        // Exactly one comparison, of two 32-byte digests: the presented token's and the hs_token's.
        expect(calls()).toEqual([[sha256(token).toString("hex"), sha256(HS_TOKEN).toString("hex")]]);
      }
    } finally {
      await server.close();
    }
  });
});

describe("webhook secrets", () => {
  const SECRET = "webhook-secret-0123456789";

  test("a bearer secret is compared with timingSafeEqual on SHA-256 digests", () => {
    for (const token of [SECRET, "short", `${SECRET}-longer`]) {
      timingSafeEqual.mockClear();
      expect(verifyBearer(`Bearer ${token}`, SECRET)).toBe(token === SECRET ? "ok" : "wrong");
      expect(calls()).toEqual([[sha256(token).toString("hex"), sha256(SECRET).toString("hex")]]);
    }
  });

  test("an X-Hub-Signature-256 is compared with timingSafeEqual on SHA-256 digests of the signatures", () => {
    const body = Buffer.from('{"zen":"hi"}');
    const expected = hubSignature(body, SECRET);
    for (const header of [expected, "sha256=00", `${expected}0`, "garbage"]) {
      timingSafeEqual.mockClear();
      expect(verifyHubSignature(header, body, SECRET)).toBe(header === expected ? "ok" : "wrong");
      expect(calls()).toEqual([[sha256(header).toString("hex"), sha256(expected).toString("hex")]]);
    }
  });
});
