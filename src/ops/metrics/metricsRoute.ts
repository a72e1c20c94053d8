import type { Express, Request, Response } from "express";
import { verifyBearer } from "../../http/auth.ts";
import { clientAddress } from "../../http/clientAddress.ts";
import type { FailureThrottle } from "../../http/FailureThrottle.ts";
import type { CourierMetrics } from "./CourierMetrics.ts";

/**
 * GET /metrics: the Prometheus exposition; with a token, only for `Authorization: Bearer
 * <token>`, and an address that keeps sending a wrong one waits (`throttle`), as on the dashboard.
 */
export function mountMetrics(
  app: Express,
  metrics: CourierMetrics,
  token: string | undefined,
  throttle: FailureThrottle,
): void {
  app.get("/metrics", async (req: Request, res: Response) => {
    if (token !== undefined) {
      const address = clientAddress(req);
      const wait = throttle.waitMs(address);
      if (wait > 0) {
        res.status(429).set("retry-after", String(Math.ceil(wait / 1000)));
        res.json({
          errcode: "M_LIMIT_EXCEEDED",
          error: "too many wrong metrics tokens",
          retry_after_ms: wait,
        });
        return;
      }
      const auth = verifyBearer(req.headers.authorization, token);
      if (auth === "missing") {
        res.status(401).json({ errcode: "M_MISSING_TOKEN", error: "metrics need Authorization: Bearer" });
        return;
      }
      if (auth === "wrong") {
        throttle.failed(address);
        res.status(403).json({ errcode: "M_FORBIDDEN", error: "wrong metrics token" });
        return;
      }
      throttle.succeeded(address);
    }
    const { contentType, body } = await metrics.scrape();
    res.type(contentType).send(body);
  });
}
