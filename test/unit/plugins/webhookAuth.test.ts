import { createHmac } from "node:crypto";
import {
  deliveryIdFromHeaders,
  hubSignature,
  verifyBearer,
  verifyHubSignature,
  verifyWebhook,
} from "../../../src/plugins/webhookAuth.ts";

const SECRET = "s3cret-0123456789abcdef";
const body = Buffer.from('{"hello":"world"}');
const sign = (b: Buffer, s = SECRET) => `sha256=${createHmac("sha256", s).update(b).digest("hex")}`;

describe("verifyBearer", () => {
  test("the right token passes, in any case of the scheme word", () => {
    expect(verifyBearer(`Bearer ${SECRET}`, SECRET)).toBe("ok");
    expect(verifyBearer(`bearer ${SECRET}`, SECRET)).toBe("ok");
  });
  test("absent or empty is missing; anything else is wrong", () => {
    expect(verifyBearer(undefined, SECRET)).toBe("missing");
    expect(verifyBearer("  ", SECRET)).toBe("missing");
    expect(verifyBearer("Bearer nope", SECRET)).toBe("wrong");
    expect(verifyBearer(`Bearer ${SECRET}x`, SECRET)).toBe("wrong");
    expect(verifyBearer(`Bearer ${SECRET.slice(1)}`, SECRET)).toBe("wrong");
    expect(verifyBearer(`Basic ${SECRET}`, SECRET)).toBe("wrong");
    expect(verifyBearer(SECRET, SECRET)).toBe("wrong");
  });
});

describe("verifyHubSignature", () => {
  test("GitHub's signature of the raw body passes (hex in either case)", () => {
    expect(verifyHubSignature(sign(body), body, SECRET)).toBe("ok");
    expect(verifyHubSignature(sign(body).toUpperCase().replace("SHA256=", "sha256="), body, SECRET)).toBe(
      "ok",
    );
    expect(hubSignature(body, SECRET)).toBe(sign(body));
  });
  test("a signature of another body, with another secret or another algorithm is wrong", () => {
    expect(verifyHubSignature(sign(Buffer.from("{}")), body, SECRET)).toBe("wrong");
    expect(verifyHubSignature(sign(body, "other"), body, SECRET)).toBe("wrong");
    expect(verifyHubSignature(sign(body).replace("sha256=", "sha1="), body, SECRET)).toBe("wrong");
    expect(verifyHubSignature("sha256=", body, SECRET)).toBe("wrong");
  });
  test("no header is missing", () => {
    expect(verifyHubSignature(undefined, body, SECRET)).toBe("missing");
  });
  test("verifyWebhook reads the header of its scheme", () => {
    expect(verifyWebhook("bearer", SECRET, { authorization: `Bearer ${SECRET}` }, body)).toBe("ok");
    expect(verifyWebhook("hmac-sha256", SECRET, { authorization: `Bearer ${SECRET}` }, body)).toBe("missing");
    expect(verifyWebhook("hmac-sha256", SECRET, { "x-hub-signature-256": sign(body) }, body)).toBe("ok");
  });
});

describe("deliveryIdFromHeaders", () => {
  test("X-GitHub-Delivery first, then Idempotency-Key; none is undefined", () => {
    expect(deliveryIdFromHeaders({ "x-github-delivery": "abc", "idempotency-key": "k" })).toBe("abc");
    expect(deliveryIdFromHeaders({ "idempotency-key": " k-1 " })).toBe("k-1");
    expect(deliveryIdFromHeaders({})).toBeUndefined();
  });
  test("a value that is not 1–200 visible ASCII characters is refused (null)", () => {
    expect(deliveryIdFromHeaders({ "idempotency-key": "a b" })).toBeNull();
    expect(deliveryIdFromHeaders({ "idempotency-key": "x".repeat(201) })).toBeNull();
  });
});
