import { Hono } from "hono";
import type { PttCore } from "./ptt-core.js";

/** The non-RPC routes of docs/protocol.md §7, shared by every runtime. */
export function createHttpApp(core: PttCore): Hono {
  const app = new Hono();
  app.get("/healthz", (c) => c.text("ok\n"));
  app.get("/readyz", async (c) => {
    try {
      await core.store.ping();
      return c.text("ready\n");
    } catch (err) {
      core.logger.warn("store not reachable", { error: String(err) });
      return c.text("store not reachable\n", 503);
    }
  });
  app.get("/metrics", async (c) => {
    const stats = await core.store.stats();
    const body = core.metrics.render({ ...stats, repliesInFlight: core.replies.inFlight });
    return c.body(body, 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
  });
  return app;
}
