import { hash, timingSafeEqual } from "node:crypto";

/** How a request's credentials compare to the secret they must present. */
export type AuthResult = "ok" | "missing" | "wrong";

// Hash both sides: equal lengths for timingSafeEqual, and nothing about the length leaks.
const digest = (value: string | Buffer): Buffer => hash("sha256", value, "buffer");

/** Compares a presented secret with the expected one in constant time. Pure, no I/O. */
export function secretMatches(presented: string | Buffer, expected: string | Buffer): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/**
 * The token of an `Authorization: Bearer <token>` header (the scheme in any case): undefined
 * when the header is absent or empty (no credentials), null when it is something else.
 */
export function bearerToken(header: string | undefined): string | null | undefined {
  if (header === undefined || header.trim() === "") return undefined;
  return BEARER.exec(header)?.[1] ?? null;
}

/** Checks `Authorization: Bearer <secret>` in constant time. Pure, no I/O. */
export function verifyBearer(header: string | undefined, secret: string): AuthResult {
  const token = bearerToken(header);
  if (token === undefined) return "missing";
  return token !== null && secretMatches(token, secret) ? "ok" : "wrong";
}
