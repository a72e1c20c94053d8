import type { Express, Request, Response } from "express";
import { tokenMatches } from "../admin/adminAuth.ts";
import type { CourierMetrics } from "./CourierMetrics.ts";

/** GET /metrics: the Prometheus exposition; with a token, only for `Authorization: Bearer <token>`. */
export function mountMetrics(app: Express, metrics: CourierMetrics, token: string | undefined): void {
  app.get("/metrics", async (req: Request, res: Response) => {
    if (token !== undefined) {
      const presented = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
      if (presented === undefined) {
        res.status(401).json({ errcode: "M_MISSING_TOKEN", error: "metrics need Authorization: Bearer" });
        return;
      }
      if (!tokenMatches(presented, token)) {
        res.status(403).json({ errcode: "M_FORBIDDEN", error: "wrong metrics token" });
        return;
      }
    }
    const { contentType, body } = await metrics.scrape();
    res.type(contentType).send(body);
  });
}
