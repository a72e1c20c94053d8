import type { Request } from "express";

/**
 * The client's address, as express's `req.ip` gives it: the socket's peer, or the address a
 * trusted proxy forwards (`appservice.trustedProxies`); never a header from anyone else.
 */
export function clientAddress(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? "unknown";
}
