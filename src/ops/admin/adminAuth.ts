import type { IncomingHttpHeaders } from "node:http";
import { verifyBearer } from "../../http/auth.ts";
import type { AdminSessions } from "./AdminSessions.ts";

/** The cookie that carries a browser's session id. */
export const SESSION_COOKIE = "courier_admin";

/** What a request presents, checked: a good bearer token, a live session, or why not. */
export type AdminCredentials =
  | { readonly kind: "bearer" }
  | { readonly kind: "session"; readonly id: string }
  /** No Authorization header and no session cookie. */
  | { readonly kind: "missing" }
  /** A session cookie that is unknown or expired (a restart ends every session). */
  | { readonly kind: "expired" }
  /** An Authorization header that is not `Bearer <the admin token>`. */
  | { readonly kind: "wrong" };

/**
 * Reads the credentials of a request. The Authorization header wins over the cookie: scripts
 * send the token, browsers the cookie. Constant-time comparison; no I/O.
 */
export function readCredentials(
  headers: IncomingHttpHeaders,
  token: string,
  sessions: AdminSessions,
): AdminCredentials {
  const authorization = headers.authorization;
  if (authorization !== undefined && authorization.trim() !== "") {
    return verifyBearer(authorization, token) === "ok" ? { kind: "bearer" } : { kind: "wrong" };
  }
  const id = cookieValue(headers.cookie, SESSION_COOKIE);
  if (id === undefined || id === "") return { kind: "missing" };
  return sessions.verify(id) ? { kind: "session", id } : { kind: "expired" };
}

/** The value of one cookie from a `Cookie` header; undefined when it is not there. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Where a state-changing request comes from, as far as the browser says: "same-origin" when its
 * `Origin` (or, without one, `Referer`) names `host`, the host the request was sent to,
 * "cross-origin" when it names another or `Sec-Fetch-Site` says cross-site, "unknown" when it
 * says nothing (not a browser, or a very old one). `host` is express's `req.host`: the `Host`
 * header, or `X-Forwarded-Host` when the request came through a trusted proxy
 * (`appservice.trustedProxies`); from anyone else that header is ignored, since any script can
 * set it.
 */
export function requestOrigin(
  headers: IncomingHttpHeaders,
  host: string | undefined,
): "same-origin" | "cross-origin" | "unknown" {
  const site = headers["sec-fetch-site"];
  if (site !== undefined && site !== "same-origin" && site !== "none") return "cross-origin";
  const source = headers.origin ?? headers.referer;
  if (source === undefined || source === "") return "unknown";
  let sourceHost: string;
  try {
    sourceHost = new URL(source).host.toLowerCase();
  } catch {
    return "cross-origin"; // "null" (a sandboxed or privacy-stripped origin) included
  }
  return host !== undefined && host.trim().toLowerCase() === sourceHost ? "same-origin" : "cross-origin";
}
