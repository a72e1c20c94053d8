import type { Express, Request, Response } from "express";
import { verifyBearer } from "../../http/auth.ts";
import type { CourierMetrics } from "./CourierMetrics.ts";

/** GET /metrics: the Prometheus exposition; with a token, only for `Authorization: Bearer <token>`. */
export function mountMetrics(app: Express, metrics: CourierMetrics, token: string | undefined): void {
  app.get("/metrics", async (req: Request, res: Response) => {
    const auth = token === undefined ? "ok" : verifyBearer(req.headers.authorization, token);
    if (auth === "missing") {
      res.status(401).json({ errcode: "M_MISSING_TOKEN", error: "metrics need Authorization: Bearer" });
      return;
    }
    if (auth === "wrong") {
      res.status(403).json({ errcode: "M_FORBIDDEN", error: "wrong metrics token" });
      return;
    }
    const { contentType, body } = await metrics.scrape();
    res.type(contentType).send(body);
  });
}
