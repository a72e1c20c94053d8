import { AdminSessions } from "../../../../src/ops/admin/AdminSessions.ts";
import { cookieValue, readCredentials, requestOrigin } from "../../../../src/ops/admin/adminAuth.ts";
import { secretMatches } from "../../../../src/http/auth.ts";

const TOKEN = "admin-token-0123456789abcdef";

describe("admin credentials", () => {
  const sessions = new AdminSessions({ ttlMs: 60_000 });

  test("bearer beats cookie; wrong, missing and ended sessions are told apart", () => {
    const { id } = sessions.create();
    const cookie = `theme=dark; courier_admin=${id}`;
    expect(readCredentials({ authorization: `Bearer ${TOKEN}` }, TOKEN, sessions)).toEqual({
      kind: "bearer",
    });
    expect(readCredentials({ authorization: `bearer   ${TOKEN}  ` }, TOKEN, sessions)).toEqual({
      kind: "bearer",
    });
    expect(readCredentials({ cookie }, TOKEN, sessions)).toEqual({ kind: "session", id });
    expect(readCredentials({ authorization: "Bearer nope", cookie }, TOKEN, sessions)).toEqual({
      kind: "wrong",
    });
    expect(readCredentials({ authorization: TOKEN }, TOKEN, sessions)).toEqual({ kind: "wrong" });
    expect(readCredentials({ authorization: `Basic ${TOKEN}` }, TOKEN, sessions)).toEqual({ kind: "wrong" });
    expect(readCredentials({ authorization: "  " }, TOKEN, sessions)).toEqual({ kind: "missing" });
    expect(readCredentials({}, TOKEN, sessions)).toEqual({ kind: "missing" });
    expect(readCredentials({ cookie: "courier_admin=" }, TOKEN, sessions)).toEqual({ kind: "missing" });
    expect(readCredentials({ cookie: "courier_admin=forged" }, TOKEN, sessions)).toEqual({ kind: "expired" });
  });

  test("the login token compares exactly", () => {
    expect(secretMatches(TOKEN, TOKEN)).toBe(true);
    expect(secretMatches(`${TOKEN} `, TOKEN)).toBe(false);
    expect(secretMatches(TOKEN.slice(0, -1), TOKEN)).toBe(false);
    expect(secretMatches("", TOKEN)).toBe(false);
  });

  test("cookieValue finds one cookie among several", () => {
    expect(cookieValue("a=1; courier_admin=xyz; b=2", "courier_admin")).toBe("xyz");
    expect(cookieValue("courier_admin_old=1", "courier_admin")).toBeUndefined();
    expect(cookieValue(undefined, "courier_admin")).toBeUndefined();
  });

  test("requestOrigin: Origin, then Referer, against the request's host; Sec-Fetch-Site overrides", () => {
    const host = "127.0.0.1:9000";
    const origin = (headers: Record<string, string>, to: string | undefined = host) =>
      requestOrigin(headers, to);
    expect(origin({ origin: "http://127.0.0.1:9000" })).toBe("same-origin");
    expect(origin({ origin: "http://127.0.0.1:9001" })).toBe("cross-origin");
    expect(origin({ origin: "http://localhost:9000" })).toBe("cross-origin");
    expect(origin({ origin: "null" })).toBe("cross-origin");
    expect(origin({ referer: "http://127.0.0.1:9000/admin/" })).toBe("same-origin");
    expect(origin({ referer: "http://evil.example/" })).toBe("cross-origin");
    expect(origin({})).toBe("unknown");
    expect(origin({ "sec-fetch-site": "cross-site", origin: "http://127.0.0.1:9000" })).toBe("cross-origin");
    expect(origin({ "sec-fetch-site": "same-site" })).toBe("cross-origin");
    expect(origin({ origin: "https://ops.EXAMPLE.org" }, "OPS.example.org")).toBe("same-origin");
    // The host comes from express (req.host), which alone decides whether X-Forwarded-Host counts:
    // the header itself is never read here.
    expect(origin({ origin: "https://ops.example.org", "x-forwarded-host": "ops.example.org" })).toBe(
      "cross-origin",
    );
    expect(requestOrigin({ origin: "http://127.0.0.1:9000" }, undefined)).toBe("cross-origin");
  });
});
